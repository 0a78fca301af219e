#!/usr/bin/env bash
# Nomad for agenthost: build (or reuse) the binary, and run the dev agent the tests use.
#
#   infra/nomad.sh binary   print the path of the nomad binary, building it first when missing
#   infra/nomad.sh start    start the dev agent (nomad/dev.hcl) unless it already answers; wait until ready
#   infra/nomad.sh stop     purge the dev agent's jobs, stop it and remove its containers and data
#   infra/nomad.sh status   exit 0 when the dev agent answers
#
# No registry we can reach packages Nomad, but it is a Go module: the binary is built from the
# module proxy's source once and cached (~3.5 min on 2 cores) under ~/.cache/agenthost.
set -euo pipefail
cd "$(dirname "$0")/.."
. infra/spawn.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# 1.6.1 is the last release under the MPL-2.0 that the module proxy serves; 1.7.0 and later are under
# the Business Source License, which we may not use. build() checks the LICENSE it compiles.
NOMAD_VERSION=1.6.1
NOMAD_COMMIT=515895c7690cdc72278018dc5dc58aca41204ccc
# The api module lives in the same repository; the proxy serves it at this pseudo-version of that commit.
NOMAD_API_VERSION=v0.0.0-20230721134942-515895c7690c
CACHE="${AGENTHOST_CACHE_DIR:-$HOME/.cache/agenthost}"
BIN="$CACHE/nomad-$NOMAD_VERSION"
DEV_DIR="${AGENTHOST_NOMAD_DEV_DIR:-$CACHE/nomad-dev}"
DEV_ADDR="http://127.0.0.1:14646"
DEV_NETWORK="ah-nomad-dev"

go_bin() {
  command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; } || {
    echo "the Go toolchain is needed to build Nomad (go >= 1.24); install it and retry" >&2
    exit 1
  }
}

module_field() {  # module@version field -> value from `go mod download -json`
  local go; go="$(go_bin)"
  (cd "$(mktemp -d)" && GOFLAGS=-mod=mod GO111MODULE=on "$go" mod download -json "$1") |
    python3 -c 'import json,sys; d=json.load(sys.stdin); v=d
for k in sys.argv[1].split("."): v=(v or {}).get(k)
sys.exit(d.get("Error") or print(v or ""))' "$2"
}

build() {
  [ -x "$BIN" ] && return 0
  local go src api origin work rc=0
  go="$(go_bin)"
  say "building Nomad $NOMAD_VERSION from source (cached at $BIN)"
  src="$(module_field "github.com/hashicorp/nomad@v$NOMAD_VERSION" Dir)"
  origin="$(module_field "github.com/hashicorp/nomad@v$NOMAD_VERSION" Origin.Hash)"
  if [ -n "$origin" ] && [ "$origin" != "$NOMAD_COMMIT" ]; then
    echo "nomad v$NOMAD_VERSION resolved to commit $origin, expected $NOMAD_COMMIT" >&2
    exit 1
  fi
  check_license "$src/LICENSE"
  api="$(module_field "github.com/hashicorp/nomad/api@$NOMAD_API_VERSION" Dir)"
  mkdir -p "$CACHE"
  # No RETURN trap: it would stay set and fire again, with `work` out of scope, when a later
  # function returns (set -u: "work: unbound variable").
  work="$(mktemp -d)"
  cp -r "$src" "$work/nomad" && chmod -R u+w "$work/nomad" && (
    cd "$work/nomad"
    "$go" mod edit -replace "github.com/hashicorp/nomad/api=$api"
    GOFLAGS=-mod=mod "$go" build -o "$BIN.tmp" .
  ) || rc=$?
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
  [ "$rc" = 0 ] || { echo "building Nomad $NOMAD_VERSION failed (rc=$rc)" >&2; exit "$rc"; }
  mv "$BIN.tmp" "$BIN"
  "$BIN" version >&2
}

check_license() {  # refuse to build anything that is not under the Mozilla Public License 2.0
  if ! grep -q "Mozilla Public License, version 2.0" "$1" 2>/dev/null || grep -qi "Business Source License" "$1"; then
    echo "$1 is not the MPL-2.0: refusing to build Nomad $NOMAD_VERSION" >&2
    exit 1
  fi
}

answers() { curl -sf -m 2 "$DEV_ADDR/v1/agent/self" >/dev/null 2>&1; }

ready() {  # a ready, eligible node whose docker driver is healthy
  curl -sf -m 3 "$DEV_ADDR/v1/nodes?resources=false" 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
ok = [n for n in nodes if n["Status"] == "ready" and n.get("Drivers", {}).get("docker", {}).get("Healthy")]
sys.exit(0 if ok else 1)' 2>/dev/null
}

start() {
  build
  if answers; then
    ready || { echo "a Nomad agent answers at $DEV_ADDR but has no ready docker node" >&2; exit 1; }
    return 0
  fi
  mkdir -p "$DEV_DIR"
  if spawned "$DEV_DIR/pid"; then
    echo "a dev agent (pid $(cat "$DEV_DIR/pid")) runs but does not answer at $DEV_ADDR; see $DEV_DIR/agent.log" >&2
    exit 1
  fi
  # Tenant containers join a bridge with inter-container traffic off (the Docker backend's rule).
  if ! docker network inspect "$DEV_NETWORK" >/dev/null 2>&1; then
    docker network create --driver bridge --label agenthost.nomad-dev=true \
      -o com.docker.network.bridge.enable_icc=false -o com.docker.network.bridge.name=ahnomaddev \
      "$DEV_NETWORK" >/dev/null
  fi
  clean_data
  mkdir -p "$DEV_DIR/data"
  say "starting nomad agent -dev at $DEV_ADDR (log: $DEV_DIR/agent.log)"
  spawn "$DEV_DIR/pid" "$DEV_DIR/agent.log" "$BIN" agent -dev -config "$PWD/nomad/dev.hcl" -data-dir "$DEV_DIR/data"
  for _ in $(seq 240); do
    ready && return 0
    spawned "$DEV_DIR/pid" || break
    sleep 0.5
  done
  tail -30 "$DEV_DIR/agent.log" >&2
  echo "the Nomad dev agent did not become ready" >&2
  exit 1
}

# What a dead agent leaves: its plugin processes (logmon, docker_logger) and the tmpfs it mounted
# in each allocation dir. Both would keep the data dir from being removed.
clean_data() {
  pkill -f "^$BIN (logmon|docker_logger|executor)" 2>/dev/null || true
  awk -v d="$DEV_DIR/data/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$DEV_DIR/data"
}

stop() {
  [ -f "$DEV_DIR/pid" ] || return 0
  if spawned "$DEV_DIR/pid" && answers; then
    # A dev agent leaves its containers running when it exits: stop every job first.
    allocs="$(curl -sf "$DEV_ADDR/v1/allocations?namespace=*" | python3 -c 'import json,sys; print(" ".join(a["ID"] for a in json.load(sys.stdin)))' || true)"
    curl -sf "$DEV_ADDR/v1/jobs?namespace=*" | python3 -c '
import json, sys
for j in json.load(sys.stdin): print(j["Namespace"], j["ID"])' | while read -r ns id; do
      curl -sf -X DELETE "$DEV_ADDR/v1/job/$id?purge=true&namespace=$ns" >/dev/null || true
    done
    for _ in $(seq 60); do
      running="$(curl -sf "$DEV_ADDR/v1/allocations?namespace=*" | python3 -c '
import json, sys
print(sum(a["ClientStatus"] in ("running", "pending") for a in json.load(sys.stdin)))' || echo 0)"
      [ "$running" = 0 ] && break
      sleep 0.5
    done
  else
    allocs=""
  fi
  kill_spawned "$DEV_DIR/pid"
  for alloc in $allocs; do
    docker ps -aq --filter "label=com.hashicorp.nomad.alloc_id=$alloc" | xargs -r docker rm -f >/dev/null
  done
  # The records of the volumes and tenant bridges its jobs made on this engine go with its data dir.
  docker volume ls -q --filter label=agenthost.nomad-volume | xargs -r docker volume rm >/dev/null || true
  docker network ls -q --filter label=agenthost.nomad-network | xargs -r docker network rm >/dev/null || true
  clean_data
}

case "${1:-}" in
  binary) build; echo "$BIN" ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 binary|start|stop|status" >&2; exit 2 ;;
esac
