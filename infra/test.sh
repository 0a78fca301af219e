#!/usr/bin/env bash
# The test command: installs everything it needs, then lints, type-checks and runs the whole suite.
# Nothing the suite is meant to cover may be skipped here (AGENTHOST_REQUIRE_E2E=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
export AGENTHOST_REQUIRE_E2E=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy orchestrator mcp_server
# The Nomad backend's tests run against a real dev agent (built from source once, then cached).
bash infra/nomad.sh start
trap 'bash infra/nomad.sh stop' EXIT
.venv/bin/pytest "$@"
