"""The SSH gateway's host key: one ed25519 key for the platform, generated on first use and kept in the data
dir encrypted with a key derived from the master key (the private key never lies on disk in clear).

``agenthost serve`` presents it; every process on the data dir (``agenthost mcp`` too) reads its public
half for ssh_info. The first process to need it writes it with a hard link, which fails when another
process got there first: then both use the one on disk.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from ..secrets import SecretBox
from .keys import generate_host_key

__all__ = ["HostKey", "load_host_key"]

HostKey = tuple[str, str, str]  # (private key in OpenSSH PEM, public key line, SHA256 fingerprint)
_AAD = "ssh-gateway-host-key"
_CIPHER = "ssh:gateway"


def _read(path: Path, box: SecretBox) -> HostKey:
    doc = json.loads(path.read_text())
    private = box.for_tenant(_CIPHER).decrypt_str(base64.b64decode(doc["private_key"]), _AAD)
    return private, doc["public_key"], doc["fingerprint"]


def load_host_key(data_dir: Path, box: SecretBox) -> HostKey:
    """The platform's SSH host key, generated and stored on first use."""
    path = data_dir / "ssh_host_key.json"
    if path.exists():
        return _read(path, box)
    private, public, fp = generate_host_key()
    sealed = base64.b64encode(box.for_tenant(_CIPHER).encrypt_str(private, _AAD)).decode()
    tmp = data_dir / f".ssh_host_key.{os.getpid()}.tmp"
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps({"private_key": sealed, "public_key": public, "fingerprint": fp}))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process wrote it first: its key is the platform's
    finally:
        tmp.unlink()
    return _read(path, box)
