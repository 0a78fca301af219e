#!/usr/bin/env bash
# The test command: installs everything it needs, then lints, type-checks and runs the whole suite.
# Nothing the suite is meant to cover may be skipped here (AGENTHOST_REQUIRE_E2E=1).
set -euo pipefail
cd "$(dirname "$0")/.."
# Nomad and Pebble are built from source the first time (minutes of compiling, then cached under
# ~/.cache/agenthost). The build runs beside the setup and the lint, which spend much of their time waiting
# on packages and disks; the Nomad agents start once it is done.
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
# The Nomad backend's tests run against a real dev agent.
bash infra/nomad.sh start
trap 'rm -f "$gobuild_log"; bash infra/nomad.sh stop' EXIT
# The three-node cluster (tests/e2e/test_nomad_cluster.py): a server and two clients in network
# namespaces of their own, each with its own dockerd, and a TLS registry (seconds to start).
bash infra/nomad-testcluster.sh start
trap 'rm -f "$gobuild_log"; bash infra/nomad-testcluster.sh stop; bash infra/nomad.sh stop' EXIT
# The unit suite (in-memory engines, about four minutes of CPU), with the line coverage of orchestrator/ and
# mcp_server/ it reaches (printed per module after the e2e run; the run fails under the floor). It runs beside
# the e2e suite, at the lowest priority: the e2e suite spends much of its time waiting on the engines
# (46% of both cores idle on average over a whole run), and the unit suite takes that time without slowing it.
unit_log="$(mktemp)" unit_tmp="$(mktemp -d)"
nice -n 19 .venv/bin/pytest tests/unit -q -p no:cacheprovider --basetemp="$unit_tmp/pytest" \
  --cov=orchestrator --cov=mcp_server --cov-report=term --cov-fail-under=80 >"$unit_log" 2>&1 &
unit=$!
e2e_tmp="$(mktemp -d)"
trap 'kill "$unit" ${second_run:-} 2>/dev/null || true; rm -rf "$gobuild_log" "$unit_log" "$unit_tmp" "$e2e_tmp"
  bash infra/nomad-testcluster.sh stop; bash infra/nomad.sh stop' EXIT
# Then the e2e suite (or what the arguments name), in two pytest processes at once, since it spends much of
# its time waiting on the engines: the second takes the tests on Nomad, in their order, and a few Docker
# modules (tests/e2e/conftest.py marks them second_run), the first the rest. The tests marked alone run after
# both, by themselves. Each run lists its slowest tests: the suite has a time budget (see docs/testing.md).
# Exit status 5: the arguments selected none for that run.
e2e() { .venv/bin/pytest -p no:cacheprovider --basetemp="$e2e_tmp/$1" -m "$2" --durations="$3" "${@:4}"; }
e2e second "second_run and not alone" 15 "${@:-tests/e2e}" >"$e2e_tmp/second.log" 2>&1 &
second_run=$!
e2e_rc=0
e2e first "not second_run and not alone" 20 "${@:-tests/e2e}" || e2e_rc=$?
second_rc=0; wait "$second_run" || second_rc=$?
echo "==> the second e2e run (the tests on Nomad, and the modules that share its process), beside the first"
cat "$e2e_tmp/second.log"
echo "==> the e2e tests that run alone"
alone_rc=0
e2e alone alone 10 "${@:-tests/e2e}" || alone_rc=$?
for rc in "$second_rc" "$alone_rc"; do [ "$rc" = 0 ] || [ "$rc" = 5 ] || e2e_rc=$rc; done
[ "$e2e_rc" = 5 ] && e2e_rc=0
unit_rc=0; wait "$unit" || unit_rc=$?
echo "==> the unit suite (run beside the e2e suite)"
cat "$unit_log"
[ "$unit_rc" = 0 ] || echo "the unit suite failed (rc=$unit_rc)" >&2
[ "$e2e_rc" = 0 ] || echo "the e2e suite failed (rc=$e2e_rc)" >&2
[ "$unit_rc" = 0 ] && [ "$e2e_rc" = 0 ]
