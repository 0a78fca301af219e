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
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

NOMAD_VERSION=1.10.5
NOMAD_COMMIT=a3b86c697f38ab032e1acaae8503ed10815bc4a2
# The api module lives in the same repository; the proxy serves it at this pseudo-version of that commit.
NOMAD_API_VERSION=v0.0.0-20250909143645-a3b86c697f38
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
  local go src api origin work
  go="$(go_bin)"
  say "building Nomad $NOMAD_VERSION from source (cached at $BIN)"
  src="$(module_field "github.com/hashicorp/nomad@v$NOMAD_VERSION" Dir)"
  origin="$(module_field "github.com/hashicorp/nomad@v$NOMAD_VERSION" Origin.Hash)"
  if [ -n "$origin" ] && [ "$origin" != "$NOMAD_COMMIT" ]; then
    echo "nomad v$NOMAD_VERSION resolved to commit $origin, expected $NOMAD_COMMIT" >&2
    exit 1
  fi
  api="$(module_field "github.com/hashicorp/nomad/api@$NOMAD_API_VERSION" Dir)"
  work="$(mktemp -d)"
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' RETURN
  cp -r "$src" "$work/nomad"
  chmod -R u+w "$work/nomad"
  mkdir -p "$CACHE"
  (
    cd "$work/nomad"
    "$go" mod edit -replace "github.com/hashicorp/nomad/api=$api"
    GOFLAGS=-mod=mod "$go" build -o "$BIN.tmp" .
  )
  mv "$BIN.tmp" "$BIN"
  "$BIN" version >&2
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
  if [ -f "$DEV_DIR/pid" ] && kill -0 "$(cat "$DEV_DIR/pid")" 2>/dev/null; then
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
  # The dynamic host volume plugin the backend creates volumes with (nomad/plugins/agenthost-dir).
  install -D -m 0755 nomad/plugins/agenthost-dir "$DEV_DIR/data/host_volume_plugins/agenthost-dir"
  say "starting nomad agent -dev at $DEV_ADDR (log: $DEV_DIR/agent.log)"
  nohup "$BIN" agent -dev -config "$PWD/nomad/dev.hcl" -data-dir "$DEV_DIR/data" >"$DEV_DIR/agent.log" 2>&1 &
  echo $! >"$DEV_DIR/pid"
  for _ in $(seq 240); do
    ready && return 0
    kill -0 "$(cat "$DEV_DIR/pid")" 2>/dev/null || break
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
  local pid; pid="$(cat "$DEV_DIR/pid")"
  if kill -0 "$pid" 2>/dev/null && answers; then
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
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  for alloc in $allocs; do
    docker ps -aq --filter "label=com.hashicorp.nomad.alloc_id=$alloc" | xargs -r docker rm -f >/dev/null
  done
  rm -f "$DEV_DIR/pid"
  clean_data
}

case "${1:-}" in
  binary) build; echo "$BIN" ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 binary|start|stop|status" >&2; exit 2 ;;
esac
