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
# The unit suite alone first (in-memory engines, about a minute), with the line coverage of orchestrator/ and
# mcp_server/ it reaches: printed per module, and the run fails under the floor.
.venv/bin/pytest tests/unit -q --cov=orchestrator --cov=mcp_server --cov-report=term --cov-fail-under=80
# The Nomad backend's tests run against a real dev agent (built from source once, then cached).
bash infra/nomad.sh start
trap 'bash infra/nomad.sh stop' EXIT
# Pebble, the ACME CA of tests/e2e/test_acme.py (built from source once, then cached).
bash infra/pebble.sh binary >/dev/null
# And the three-node cluster (tests/e2e/test_nomad_cluster.py): a server and two clients in network
# namespaces of their own, each with its own dockerd, and a TLS registry (seconds to start).
bash infra/nomad-testcluster.sh start
trap 'bash infra/nomad-testcluster.sh stop; bash infra/nomad.sh stop' EXIT
# Then the e2e suite (or what the arguments name).
# The slowest tests are listed at the end: the suite has a time budget (see docs/testing.md).
.venv/bin/pytest --durations=30 "${@:-tests/e2e}"
