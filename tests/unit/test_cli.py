"""The operator CLI's tenant commands, prose and --json, on a data dir of their own and with no engine to reach."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mcp_server.cli import main

KEY = re.compile(r"^ah_[0-9a-f]{16}\.\S+$")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Nothing listens there: a command that reached for the engine would fail.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("AGENTHOST_NOMAD_ADDR", "http://127.0.0.1:9")
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str) -> str:
    assert main([*argv, "--data-dir", str(data_dir)]) == 0
    return capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str) -> Any:
    return json.loads(run(capsys, data_dir, *argv, "--json"))


def test_init_json_prints_the_data_dir_and_the_admin_key(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    out = run_json(capsys, data_dir, "init")
    assert out.keys() == {"data_dir", "admin_key"}
    assert out["data_dir"] == str(data_dir.resolve())
    assert KEY.match(out["admin_key"])


def test_init_json_on_an_initialised_dir_says_so(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    run(capsys, data_dir, "init")
    assert run_json(capsys, data_dir, "init") == {"data_dir": str(data_dir.resolve()), "already_initialised": True}


def test_tenant_create_json_prints_the_tenant_and_its_key(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    run(capsys, data_dir, "init")
    out = run_json(capsys, data_dir, "tenant", "create", "bob")
    assert out.keys() == {"tenant", "key"}
    assert out["tenant"]["name"] == "bob"
    assert re.fullmatch(r"t_[0-9a-f]+", out["tenant"]["id"])
    assert out["tenant"]["quotas"]["max_services"] >= 1
    assert KEY.match(out["key"])


def test_tenant_list_json_is_a_list_of_every_tenant(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    run(capsys, data_dir, "init")
    bob = run_json(capsys, data_dir, "tenant", "create", "bob")["tenant"]
    listing = run_json(capsys, data_dir, "tenant", "list")
    assert [t["name"] for t in listing] == ["admin", "bob"]
    assert listing[1] == bob


def test_prose_stays_the_default(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    init = run(capsys, data_dir, "init")
    assert f"initialised {data_dir.resolve()}" in init
    assert "admin API key (shown once, store it now)" in init
    created = run(capsys, data_dir, "tenant", "create", "bob")
    assert re.search(r"created tenant bob \(t_[0-9a-f]+\)", created)
    listing = run(capsys, data_dir, "tenant", "list").splitlines()
    assert [line.split("\t")[0] for line in listing] == ["admin", "bob"]
    assert "already initialised; nothing to do" in run(capsys, data_dir, "init")


def test_a_tenant_name_taken_fails_with_a_hint(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    run(capsys, data_dir, "init")
    run(capsys, data_dir, "tenant", "create", "bob")
    assert main(["tenant", "create", "bob", "--json", "--data-dir", str(data_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error:" in captured.err and "hint:" in captured.err
