#!/usr/bin/env bash
# Bootstrap one host of an agenthost Nomad cluster: 3 servers + N clients (docker driver, runsc).
#
#   infra/nomad-cluster.sh server --addr 10.0.0.1 --servers 10.0.0.1,10.0.0.2,10.0.0.3 --gossip-key KEY
#   infra/nomad-cluster.sh client --addr 10.0.0.11 --iface eth0 --servers 10.0.0.1,10.0.0.2,10.0.0.3
#   infra/nomad-cluster.sh acl    (once, on a server, after the three joined: prints agenthost's token)
#
# Security (nomad/README.md, "Security"): every agent needs /etc/nomad.d/tls/{ca,agent,agent-key}.pem, from
# the cluster's CA (e.g. `nomad tls ca create`, then `nomad tls cert create -server` / `-client`); servers
# share one gossip key (`nomad operator gossip keyring generate`). `acl` talks to the local server over
# https with NOMAD_CACERT / NOMAD_CLIENT_CERT / NOMAD_CLIENT_KEY (a `nomad tls cert create -cli` certificate).
#   infra/nomad-cluster.sh render server|client ... --out DIR   (write the config only; used by tests)
#   infra/nomad-cluster.sh start|stop|status|env|push ...   the tests' cluster on this one machine
#                                                            (infra/nomad-testcluster.sh)
#
# Run it on each host. The binary comes from infra/nomad.sh (built from source once, cached);
# configs are nomad/server.hcl and nomad/client.hcl with their placeholders filled in.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

case "${1:-}" in
  start|stop|status|env|push) exec bash infra/nomad-testcluster.sh "$@" ;;
esac
role="${1:-}"; shift || true
render_only=""
if [ "$role" = render ]; then render_only=1; role="${1:-}"; shift || true; fi
addr=""; servers=""; iface=""; out="/etc/nomad.d"; runtimes=""; gossip_key=""
while [ $# -gt 0 ]; do
  case "$1" in
    --addr) addr="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --iface) iface="$2"; shift 2 ;;
    --runtimes) runtimes="$2"; shift 2 ;;
    --gossip-key) gossip_key="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

quote_list() { python3 -c 'import json,sys; print(", ".join(json.dumps(s) for s in sys.argv[1].split(",") if s))' "$1"; }

render() {  # template -> destination
  local src="$1" dst="$2"
  python3 - "$src" "$dst" "$addr" "$(quote_list "$servers")" "$iface" "$runtimes" "$(quote_list "$runtimes")" \
    "$gossip_key" <<'PY'
import sys
src, dst, addr, servers, iface, runtimes, runtimes_list, gossip_key = sys.argv[1:]
text = open(src).read()
for key, value in {"__ADDR__": addr, "__SERVERS__": servers, "__IFACE__": iface,
                   "__RUNTIMES__": runtimes, "__RUNTIMES_LIST__": runtimes_list, "__GOSSIP_KEY__": gossip_key}.items():
    text = text.replace(key, value)
open(dst, "w").write(text)
PY
}

need() { [ -n "$2" ] || { echo "$1 is required" >&2; exit 2; }; }

install_binary() {
  local bin; bin="$(bash infra/nomad.sh binary)"
  $SUDO install -m 0755 "$bin" /usr/local/bin/nomad
}

egress_rules() {  # the node's egress rules (nomad/README.md), before Nomad places any task
  local bin; bin="$(command -v agenthost || true)"
  if [ -z "$bin" ]; then
    echo "warning: agenthost is not installed on this node, so neither are its egress rules: tasks reach" \
      "the node, its LAN and cloud metadata. Install it (pip install .) and run this again." >&2
    return 0
  fi
  if [ -d /run/systemd/system ]; then
    sed "s#@AGENTHOST@#$bin#" infra/systemd/agenthost-egress.service |
      $SUDO tee /etc/systemd/system/agenthost-egress.service >/dev/null
    $SUDO systemctl daemon-reload
    $SUDO systemctl enable --now agenthost-egress
  else
    $SUDO "$bin" egress apply
  fi
}

start_agent() {
  if [ -d /run/systemd/system ]; then
    $SUDO install -m 0644 infra/systemd/nomad.service /etc/systemd/system/nomad.service
    $SUDO systemctl daemon-reload
    $SUDO systemctl enable --now nomad
  else
    $SUDO sh -c 'nohup /usr/local/bin/nomad agent -config /etc/nomad.d >/var/log/nomad.log 2>&1 &'
  fi
}

case "$role" in
  server)
    need --addr "$addr"; need --servers "$servers"; need --gossip-key "$gossip_key"
    mkdir -p "$out"
    render nomad/server.hcl "$out/server.hcl"
    [ -n "$render_only" ] && exit 0
    install_binary
    start_agent
    say "server $addr started; once three servers joined run: infra/nomad-cluster.sh acl"
    ;;
  client)
    need --addr "$addr"; need --servers "$servers"
    iface="${iface:-$(ip -o -4 addr show | awk -v a="$addr" '$4 ~ "^"a"/" {print $2; exit}')}"
    need --iface "$iface"
    if [ -z "$render_only" ]; then
      bash infra/setup.sh  # docker.io, runsc and the runtime config, like a single-node host
      if ! docker network inspect ah-nomad >/dev/null 2>&1; then
        docker network create --driver bridge -o com.docker.network.bridge.enable_icc=false \
          -o com.docker.network.bridge.name=ahnomad ah-nomad >/dev/null
      fi
      if [ -z "$runtimes" ]; then
        runtimes="runc,runsc"
        docker info 2>/dev/null | grep sysbox-runc >/dev/null && runtimes="$runtimes,sysbox-runc"
      fi
    fi
    runtimes="${runtimes:-runc,runsc}"
    mkdir -p "$out"
    render nomad/client.hcl "$out/client.hcl"
    [ -n "$render_only" ] && exit 0
    install_binary
    egress_rules
    start_agent
    say "client $addr started (runtimes: $runtimes)"
    ;;
  acl)
    export NOMAD_ADDR="${NOMAD_ADDR:-https://127.0.0.1:4646}"
    boot="$(nomad acl bootstrap -json)"
    export NOMAD_TOKEN; NOMAD_TOKEN="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretID"])' <<<"$boot")"
    say "management token (store it offline; agenthost never needs it): $NOMAD_TOKEN"
    nomad namespace apply -description "agenthost's jobs and Variables" agenthost
    nomad acl policy apply -description "agenthost platform" agenthost nomad/agenthost-policy.hcl
    echo "AGENTHOST_NOMAD_NAMESPACE=agenthost"
    nomad acl token create -name agenthost -type client -policy agenthost -json |
      python3 -c 'import json,sys; print("AGENTHOST_NOMAD_TOKEN=" + json.load(sys.stdin)["SecretID"])'
    ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
