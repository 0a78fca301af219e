"""The control plane checks what an https registry serves with the login its builder pushes with: the one in
its docker client config (DOCKER_CONFIG), for that registry only."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from orchestrator.builds.registry import _login
from orchestrator.errors import BackendUnavailable


def test_the_login_comes_from_the_docker_client_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = base64.b64encode(b"agenthost-node:s3cret:with:colons").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"10.89.0.1:25000": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert _login("10.89.0.1:25000") == ("agenthost-node", "s3cret:with:colons")
    assert _login("10.89.0.1:25001") is None  # another registry gets no login


def test_no_config_means_no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert _login("10.89.0.1:25000") is None


def test_a_broken_credential_helper_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "agenthost-test-no-such-helper"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(BackendUnavailable) as err, pytest.warns(UserWarning, match="not installed"):
        _login("10.89.0.1:25000")
    assert "docker credentials for 10.89.0.1:25000 cannot be read" in err.value.message
