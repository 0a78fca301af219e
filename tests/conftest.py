"""Suite-wide rules: with AGENTHOST_REQUIRE_E2E=1 (set by infra/test.sh) a skipped e2e test fails the run."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if os.environ.get("AGENTHOST_REQUIRE_E2E") != "1":
        return
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if "/e2e/" in str(r.nodeid) or "e2e" in str(r.nodeid)
    ]
    if skipped:
        terminalreporter.write_line(
            f"FAILED: {len(skipped)} e2e test(s) were skipped, and CI must run them all:", red=True
        )
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            terminalreporter.write_line(f"  {report.nodeid}: {reason}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("AGENTHOST_REQUIRE_E2E") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    if any("e2e" in str(r.nodeid) for r in reporter.stats.get("skipped", [])):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
