"""Suite-wide rules: every run ends with how many e2e tests it skipped and why, in red; with
AGENTHOST_REQUIRE_E2E=1 (set by infra/test.sh) a skipped e2e test fails the run."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def repo_dir() -> Iterator[Path]:
    """A fresh directory other uids may enter, for git repositories and build dirs: builds run git as an
    unprivileged uid, which cannot enter pytest's tmp_path (private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="ah-repos-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """A failure raised through nested task groups (an MCP client in a test's task group is ten deep) prints
    past the depth at which the traceback stops: its innermost errors are added to the report whole."""
    outcome = yield
    if call.excinfo is None or not isinstance(call.excinfo.value, BaseExceptionGroup):
        return
    text = "\n".join("".join(traceback.format_exception(leaf)) for leaf in _leaves(call.excinfo.value))
    outcome.get_result().sections.append(("innermost errors", text))


def _e2e_skips(reporter: pytest.TerminalReporter) -> dict[str, list[str]]:
    """The e2e tests this run skipped, grouped by reason: {reason: [node ids]}."""
    grouped: dict[str, list[str]] = {}
    for report in reporter.stats.get("skipped", []):
        if "e2e" not in report.keywords and "/e2e/" not in f"/{report.nodeid}":
            continue
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        grouped.setdefault(reason.removeprefix("Skipped: "), []).append(report.nodeid)
    return grouped


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    """Skipped e2e tests are never quiet: the count and each reason, in red, at the end of every run."""
    grouped = _e2e_skips(terminalreporter)
    if not grouped:
        return
    count = sum(len(ids) for ids in grouped.values())
    required = os.environ.get("AGENTHOST_REQUIRE_E2E") == "1"
    terminalreporter.section("e2e tests skipped", sep="=", red=True, bold=True)
    headline = f"{count} e2e test{'s were' if count != 1 else ' was'} skipped"
    if required:
        headline = f"FAILED: {headline}, and CI must run them all (AGENTHOST_REQUIRE_E2E=1)"
    else:
        headline += ": this run did not check the product against a real engine"
    terminalreporter.write_line(headline, red=True, bold=True)
    for reason, ids in sorted(grouped.items(), key=lambda item: -len(item[1])):
        terminalreporter.write_line(f"  {len(ids)} x {reason}", red=True)
        if required:
            for nodeid in ids:
                terminalreporter.write_line(f"      {nodeid}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("AGENTHOST_REQUIRE_E2E") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _e2e_skips(reporter):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
