"""The suite's own rule (tests/conftest.py): a run that skipped e2e tests says so, in red, with each reason;
with AGENTHOST_REQUIRE_E2E=1 it fails. Checked on a small suite of its own, run by a real pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
RED = "\x1b[31m"

E2E_TESTS = """
import pytest

pytestmark = pytest.mark.e2e

def test_no_engine():
    pytest.skip("Docker is not reachable; run `bash infra/setup.sh` first")

def test_no_engine_either():
    pytest.skip("Docker is not reachable; run `bash infra/setup.sh` first")

def test_no_image():
    pytest.skip("image agenthost/base:bookworm missing; run `agenthost images build`")

def test_ran():
    pass
"""
UNIT_TESTS = """
import pytest

def test_skipped_unit():
    pytest.skip("not an e2e test")
"""


def run_suite(tmp_path: Path, require: bool, e2e: bool = True) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: real engine\n")
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / "test_unit.py").write_text(UNIT_TESTS)
    if e2e:
        (tmp_path / "e2e").mkdir()
        (tmp_path / "e2e" / "test_engine.py").write_text(E2E_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "AGENTHOST_REQUIRE_E2E"}
    if require:
        env["AGENTHOST_REQUIRE_E2E"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=yes", "-q", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def red_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if RED in line]


def test_a_plain_run_says_loudly_how_many_e2e_tests_it_skipped_and_why(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, require=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    red = "\n".join(red_lines(proc.stdout))
    assert "3 e2e tests were skipped" in red
    assert "2 x Docker is not reachable; run `bash infra/setup.sh` first" in red
    assert "1 x image agenthost/base:bookworm missing; run `agenthost images build`" in red
    assert "not an e2e test" not in red


def test_with_require_e2e_a_skipped_e2e_test_fails_the_run(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, require=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    red = "\n".join(red_lines(proc.stdout))
    assert "FAILED: 3 e2e tests were skipped, and CI must run them all" in red
    assert "e2e/test_engine.py::test_no_image" in red


def test_a_run_without_e2e_skips_adds_nothing(tmp_path: Path) -> None:
    for require in (False, True):
        proc = run_suite(tmp_path / str(require), require=require, e2e=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "e2e test" not in proc.stdout
