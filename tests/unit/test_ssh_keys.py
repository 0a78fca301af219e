"""Public key validation and host key generation."""

from __future__ import annotations

import subprocess

import asyncssh
import pytest

from orchestrator.errors import InvalidInput
from orchestrator.ssh.keys import fingerprint, generate_host_key, normalize_public_key


@pytest.mark.parametrize(
    ("kind", "size"),
    [("ssh-ed25519", None), ("ecdsa-sha2-nistp256", None), ("ecdsa-sha2-nistp521", None), ("ssh-rsa", 3072)],
)
def test_strong_keys_are_accepted_and_rebuilt(kind: str, size: int | None) -> None:
    key = asyncssh.generate_private_key(kind, key_size=size) if size else asyncssh.generate_private_key(kind)
    line = key.export_public_key().decode().strip() + " me@host"
    assert normalize_public_key("  " + line + "\n") == line
    assert fingerprint(line) == key.get_fingerprint("sha256")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("ssh-ed25519", "no key data"),
        ("ssh-ed25519 !!!", "base64"),
        ("ssh-ed25519 AAAA", "base64"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP==", "DSA"),
        ("ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIC17tDXI7mA46OnC4w7FAC/7PLNb14ac2bv219Aoedz7", "holds a"),
        ('from="10.0.0.1" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC17tDXI7mA46OnC4w7FAC/7PLNb14ac2bv219Aoedz7', "options"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC17tDXI7mA46OnC4w7FAC/7PLNb14ac2bv219Aoedz7\nssh-ed25519 x", "lines"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "unsupported"),
    ],
)
def test_bad_keys_are_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalize_public_key(text)
    assert why in err.value.message


def test_short_rsa_is_refused() -> None:
    line = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
    with pytest.raises(InvalidInput, match="2048 bits is too weak"):
        normalize_public_key(line)


def test_comment_with_control_characters_is_dropped() -> None:
    line = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    assert normalize_public_key(f"{line[0]} {line[1]} evil\x1b[2J") == f"{line[0]} {line[1]}"


def test_host_key_matches_ssh_keygen(tmp_path: object) -> None:
    private, public, fp = generate_host_key()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and public.startswith("ssh-ed25519 ")
    key = asyncssh.import_private_key(private)
    assert key.export_public_key().decode().split()[:2] == public.split()[:2]
    assert key.get_fingerprint("sha256") == fp
    out = subprocess.run(["ssh-keygen", "-lf", "-"], input=public, capture_output=True, text=True, check=True).stdout
    assert fp in out
