from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import AgentHostError, Unauthorized
from orchestrator.secrets import (
    SecretBox,
    load_master_key,
    new_api_key,
    parse_api_key,
    secret_matches,
    write_master_key,
)


def test_roundtrip_and_binding(tmp_path: Path) -> None:
    box = SecretBox(write_master_key(tmp_path / "master.key"))
    a, b = box.for_tenant("t_a"), box.for_tenant("t_b")
    blob = a.encrypt_str("hunter2", "env:svc:KEY")
    assert b"hunter2" not in blob
    assert a.decrypt_str(blob, "env:svc:KEY") == "hunter2"
    with pytest.raises(AgentHostError):
        a.decrypt_str(blob, "env:svc:OTHER")  # moved to another record
    with pytest.raises(AgentHostError):
        b.decrypt_str(blob, "env:svc:KEY")  # another tenant's key
    assert a.encrypt_str("x", "k") != a.encrypt_str("x", "k")  # fresh nonce each time


def test_master_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key = write_master_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(AgentHostError, match="readable by others"):
        load_master_key(path)
    with pytest.raises(AgentHostError, match="agenthost init"):
        load_master_key(tmp_path / "missing.key")
    with pytest.raises(FileExistsError):
        write_master_key(path)


def test_api_keys() -> None:
    full, key_id, digest = new_api_key()
    parsed_id, secret = parse_api_key(full)
    assert parsed_id == key_id and secret_matches(secret, digest)
    assert not secret_matches(secret + "x", digest)
    for bad in ("", "nope", "ah_short.x", f"ah_{key_id}", f"xx_{key_id}.abc"):
        with pytest.raises(Unauthorized):
            parse_api_key(bad)
