#!/usr/bin/env bash
# The test command: installs everything it needs, then lints, type-checks and runs the whole suite.
# Nothing the suite is meant to cover may be skipped here (AGENTHOST_REQUIRE_E2E=1).
set -euo pipefail
cd "$(dirname "$0")/.."
# Nomad and Pebble are built from source the first time (minutes of compiling, then cached under
# ~/.cache/agenthost). The build runs beside the setup and the lint, which spend much of their time waiting
# on packages and disks; the unit suite runs once it is done, on a quiet machine.
gobuild_log="$(mktemp)"
(bash infra/nomad.sh binary && bash infra/pebble.sh binary) >"$gobuild_log" 2>&1 &
gobuild=$!
trap 'kill "$gobuild" 2>/dev/null; rm -f "$gobuild_log"' EXIT
bash infra/setup.sh
export AGENTHOST_REQUIRE_E2E=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy orchestrator mcp_server
gobuild_rc=0; wait "$gobuild" || gobuild_rc=$?
cat "$gobuild_log" >&2
[ "$gobuild_rc" = 0 ] || { echo "building Nomad or Pebble failed (rc=$gobuild_rc)" >&2; exit 1; }
# The unit suite alone first (in-memory engines, about a minute), with the line coverage of orchestrator/ and
# mcp_server/ it reaches: printed per module, and the run fails under the floor.
.venv/bin/pytest tests/unit -q --cov=orchestrator --cov=mcp_server --cov-report=term --cov-fail-under=80
# The Nomad backend's tests run against a real dev agent.
bash infra/nomad.sh start
trap 'rm -f "$gobuild_log"; bash infra/nomad.sh stop' EXIT
# The three-node cluster (tests/e2e/test_nomad_cluster.py): a server and two clients in network
# namespaces of their own, each with its own dockerd, and a TLS registry (seconds to start).
bash infra/nomad-testcluster.sh start
trap 'rm -f "$gobuild_log"; bash infra/nomad-testcluster.sh stop; bash infra/nomad.sh stop' EXIT
# Then the e2e suite (or what the arguments name).
# The slowest tests are listed at the end: the suite has a time budget (see docs/testing.md).
.venv/bin/pytest --durations=30 "${@:-tests/e2e}"
