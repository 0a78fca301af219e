#!/usr/bin/env bash
# A real three-node Nomad cluster on this one machine, for the tests: one server and two clients, each
# client a "host" of its own, plus a TLS registry every node pulls from.
#
#   infra/nomad-testcluster.sh start    build what is missing, start everything, wait until both clients are ready
#   infra/nomad-testcluster.sh stop     stop everything and remove what start made (bridge, namespaces, rules, state)
#   infra/nomad-testcluster.sh status   exit 0 when the server answers with two ready clients
#   infra/nomad-testcluster.sh push IMAGE...   push local images to the cluster registry; prints "IMAGE REF@DIGEST"
#   infra/nomad-testcluster.sh env      print the settings tests use (addresses, registry, tokens, credentials' paths)
# (also reachable as infra/nomad-cluster.sh start|stop|status|env)
#
# Layout (docs/backends.md, "The test cluster"):
#   bridge nclu0 10.89.0.1/24 in the host namespace: the server (HTTPS 24646, RPC 24647, serf 24648)
#     and the registry (https://10.89.0.1:25000, htpasswd) listen on 10.89.0.1 only.
#   Security as in production (nomad/README.md, "Security"): one CA made here signs the registry's and every
#     agent's certificate; HTTP and RPC are mutual TLS (verify_https_client, verify_server_hostname), the
#     servers' gossip is encrypted, ACLs are on. The management token (bootstrap) stays in the state dir for
#     this script and the tests' helpers; agenthost gets a client token of nomad/agenthost-policy.hcl, whose
#     jobs and Variables live in the namespace agenthost.
#   node n1 10.89.0.11, node n2 10.89.0.12: each a network namespace (veth into the bridge, no default
#     route) and a mount namespace in which /run/docker.sock is the node's own dockerd and
#     /etc/docker/certs.d its own trust; in both run the node's dockerd (own data-root, exec-root,
#     socket, pidfile, cgroup parent, runsc) and its Nomad client (own data dir and cgroup parent).
#   A node's workloads reach nothing on the cluster's bridge (the server, the registry, other nodes) and
#   nothing of the node itself: its iptables (DOCKER-USER, INPUT) drop them.
# Everything lives under ~/.cache/agenthost/nomad-cluster (the Nomad binary comes from infra/nomad.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

CACHE="${AGENTHOST_CACHE_DIR:-$HOME/.cache/agenthost}"
STATE="$CACHE/nomad-cluster"
# Not "ah…": the host's egress rules refuse new connections from interfaces named ah+ (tenant bridges).
BRIDGE=nclu0
NET=10.89.0
SERVER_IP="$NET.1"
HTTP_PORT=24646
ADDR="https://$SERVER_IP:$HTTP_PORT"
NAMESPACE=agenthost
PKI="$STATE/pki"
ACL="$STATE/acl"
REGISTRY="$SERVER_IP:25000"
NODES="n1 n2"
node_ip() { case "$1" in n1) echo "$NET.11" ;; n2) echo "$NET.12" ;; esac; }
netns() { echo "ahcl-$1"; }
REG_USER=agenthost-node

# The server's API as an operator: the CA, the operator's client certificate and (once bootstrapped) the
# management token. api [curl options...] PATH
api() {
  local token=()
  [ -f "$ACL/management.token" ] && token=(-H "X-Nomad-Token: $(cat "$ACL/management.token")")
  curl -sf -m 10 --cacert "$PKI/ca.crt" --cert "$PKI/cli.crt" --key "$PKI/cli.key" "${token[@]}" \
    "${@:1:$#-1}" "$ADDR/v1/${*: -1}"
}

# A leader elected (the one endpoint that needs no token).
answers() { api status/leader 2>/dev/null | grep -q ":24647"; }

ready_clients() {  # how many ready clients have a healthy docker driver with runsc
  api "nodes?resources=false" 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
print(sum(n["Status"] == "ready" and n.get("Drivers", {}).get("docker", {}).get("Healthy", False) for n in nodes))' \
    2>/dev/null || echo 0
}


. infra/spawn.sh

wait_for() {  # what, tries (0.5 s apart), command...
  local what="$1" tries="$2"; shift 2
  for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.5; done
  echo "timed out waiting for $what" >&2
  return 1
}

# --- the bridge and the nodes' namespaces ---------------------------------------------------------

network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SERVER_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  for n in $NODES; do
    local ns; ns="$(netns "$n")"
    if ! ip netns list | grep -qw "$ns"; then ip netns add "$ns"; fi
    if ! ip link show "nclu-$n" >/dev/null 2>&1; then
      ip link add "nclu-$n" type veth peer name eth0 netns "$ns"
      ip link set "nclu-$n" master "$BRIDGE" up
      ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
}

# Each node's daemons share a mount namespace of their own, the one its dockerd is started in
# (`unshare --mount`, all mounts private): in it /run/docker.sock is the node's own dockerd (a task that
# mounts the socket, e.g. the net prestart task, talks to its own node, as on a real host) and
# /etc/docker/certs.d is the node's own trust store. Nothing mounted there shows on the host, and it
# goes when the last process in it ends.
mnt_ns() { echo "/proc/$(cat "$STATE/$1/dockerd.pid")/ns/mnt"; }

on_node() {  # node command...: run in the node's network and mount namespaces
  local n="$1"; shift
  nsenter --net="/var/run/netns/$(netns "$n")" --mount="$(mnt_ns "$n")" "$@"
}

# --- the registry ---------------------------------------------------------------------------------

sign() {  # name subject-alt-names extended-key-usage: a key and a certificate the cluster's CA signed
  local d="$PKI" name="$1"
  [ -f "$d/$name.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" >"$d/$name.cnf"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
    -extfile "$d/$name.cnf" -out "$d/$name.crt" 2>/dev/null
  chmod 600 "$d/$name.key"
}

# One CA for the cluster: the registry's certificate and every Nomad agent's. Nomad checks the role in the
# name (verify_server_hostname): server.<region>.nomad for servers, client.<region>.nomad for clients.
pki() {
  mkdir -p "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=agenthost test cluster CA" \
      -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    chmod 600 "$PKI/ca.key"
  fi
  sign registry "IP:$SERVER_IP" serverAuth
  sign server "DNS:server.global.nomad,DNS:localhost,IP:$SERVER_IP,IP:127.0.0.1" serverAuth,clientAuth
  for n in $NODES; do sign "$n" "DNS:client.global.nomad,DNS:localhost,IP:$(node_ip "$n")" serverAuth,clientAuth; done
  sign cli "DNS:cli.global.nomad" clientAuth              # this script and the tests' operator helpers
  sign agenthost "DNS:agenthost.global.nomad" clientAuth  # the control plane's Nomad backend
  if [ ! -f "$STATE/server/gossip.key" ]; then
    mkdir -p "$STATE/server"
    (umask 077; python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' >"$STATE/server/gossip.key")
  fi
}

tls_block() {  # name: the agent's tls block (mutual TLS on HTTP and RPC)
  cat <<HCL
tls {
  http                   = true
  rpc                    = true
  ca_file                = "$PKI/ca.crt"
  cert_file              = "$PKI/$1.crt"
  key_file               = "$PKI/$1.key"
  verify_server_hostname = true
  verify_https_client    = true
}
HCL
}

# One password for the nodes' and the builder's pulls and pushes; tenants get none of it.
credentials() {
  local d="$STATE/registry"
  mkdir -p "$d"
  if [ ! -f "$d/password" ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$d/password")
  fi
  python3 -W ignore -c '
import crypt, sys
print(sys.argv[1] + ":" + crypt.crypt(open(sys.argv[2]).read().strip(), crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
    "$REG_USER" "$d/password" >"$d/htpasswd"
  # A docker client config (for `docker --config`, docker-py's DOCKER_CONFIG and the Nomad docker
  # driver's auth.config) holding the login.
  python3 -c '
import base64, json, sys
user, pw, reg = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
print(json.dumps({"auths": {reg: {"auth": auth}}}))' "$REG_USER" "$d/password" "$REGISTRY" >"$d/docker-config.json.new"
  mkdir -p "$d/docker-config"
  (umask 077; mv "$d/docker-config.json.new" "$d/docker-config/config.json")
}

registry_answers() {
  curl -s -o /dev/null -w '%{http_code}' -m 2 --cacert "$PKI/ca.crt" "https://$REGISTRY/v2/" 2>/dev/null | grep -q 401
}

registry_up() {
  credentials
  # Every daemon that talks to the registry trusts the CA: the host's (the builder) and each node's.
  mkdir -p "/etc/docker/certs.d/$REGISTRY"
  cp "$PKI/ca.crt" "/etc/docker/certs.d/$REGISTRY/ca.crt"
  for n in $NODES; do
    mkdir -p "$STATE/$n/certs.d/$REGISTRY"
    cp "$PKI/ca.crt" "$STATE/$n/certs.d/$REGISTRY/ca.crt"
  done
  registry_answers && return 0
  local d="$STATE/registry"
  mkdir -p "$d/store"
  cat >"$d/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $d/store
  delete:
    enabled: true
http:
  addr: $REGISTRY
  tls:
    certificate: $STATE/pki/registry.crt
    key: $STATE/pki/registry.key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: agenthost-cluster
    path: $d/htpasswd
YML
  say "starting the cluster registry on https://$REGISTRY"
  spawn "$d/pid" "$d/registry.log" docker-registry serve "$d/config.yml"
  wait_for "the registry at https://$REGISTRY" 40 registry_answers || { tail -20 "$d/registry.log" >&2; exit 1; }
}

# --- the nodes' dockerd ---------------------------------------------------------------------------

docker_node() { docker -H "unix://$STATE/$1/docker.sock" "${@:2}"; }

dockerd_up() {
  local n="$1" d="$STATE/$1"
  mkdir -p "$d/docker" "$d/exec"
  if ! spawned "$d/dockerd.pid"; then
    cat >"$d/daemon.json" <<JSON
{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}},
 "default-runtime": "runsc", "cgroup-parent": "/ahcl-$n-docker", "iptables": true, "ip-forward": true}
JSON
    say "starting dockerd of node $n"
    mkdir -p "$d/certs.d" /etc/docker/certs.d
    # unshare, sh and nsenter exec in turn: the pid recorded is dockerd's.
    spawn "$d/dockerd.pid" "$d/dockerd.log" unshare --mount --propagation private sh -c \
      'mount --bind "$1" /etc/docker/certs.d && shift && exec nsenter --net="$@"' sh "$d/certs.d" \
      "/var/run/netns/$(netns "$n")" dockerd --config-file "$d/daemon.json" --data-root "$d/docker" --exec-root "$d/exec" \
      --pidfile "$d/exec/dockerd.pid" -H "unix://$d/docker.sock"
  fi
  wait_for "dockerd of node $n" 120 docker_node "$n" info >/dev/null 2>&1 || { tail -20 "$d/dockerd.log" >&2; exit 1; }
  # Tasks that mount /run/docker.sock on this node talk to this dockerd.
  if ! on_node "$n" sh -c 'grep -q " /run/docker.sock " /proc/self/mountinfo'; then
    on_node "$n" sh -c "[ -e /run/docker.sock ] || touch /run/docker.sock; mount --bind '$d/docker.sock' /run/docker.sock"
  fi
  # The node's agenthost bridge (client meta agenthost.docker-network), inter-container traffic off.
  docker_node "$n" network inspect ah-nomad >/dev/null 2>&1 ||
    docker_node "$n" network create --driver bridge -o com.docker.network.bridge.enable_icc=false \
      -o com.docker.network.bridge.name=ahnomad ah-nomad >/dev/null
  node_firewall "$n"
}

# Workloads reach nothing of the cluster's network (server, registry, other nodes) nor the node itself;
# the host reaches their published ports. No default route leaves the node's namespace at all.
node_firewall() {
  local n="$1"
  on_node "$n" sh -c "
    iptables -F DOCKER-USER
    iptables -A DOCKER-USER -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
    iptables -A DOCKER-USER -i eth0 -j RETURN
    iptables -A DOCKER-USER -d $NET.0/24 -j DROP
    iptables -A DOCKER-USER -j RETURN
    iptables -N AHCL-IN 2>/dev/null || iptables -F AHCL-IN
    iptables -A AHCL-IN -i lo -j RETURN
    iptables -A AHCL-IN -i eth0 -j RETURN
    iptables -A AHCL-IN -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
    iptables -A AHCL-IN -j DROP
    iptables -C INPUT -j AHCL-IN 2>/dev/null || iptables -I INPUT -j AHCL-IN
  "
}

# --- Nomad ----------------------------------------------------------------------------------------

server_up() {
  local bin="$1" d="$STATE/server"
  spawned "$d/pid" && return 0
  mkdir -p "$d/data"
  cat >"$d/server.hcl" <<HCL
name                 = "ahcl-server"
data_dir             = "$d/data"
bind_addr            = "$SERVER_IP"
log_level            = "INFO"
disable_update_check = true
ports {
  http = $HTTP_PORT
  rpc  = 24647
  serf = 24648
}
server {
  enabled          = true
  bootstrap_expect = 1
  encrypt          = "$(cat "$d/gossip.key")"
  default_scheduler_config {
    memory_oversubscription_enabled = true
  }
}
acl {
  enabled = true
}
$(tls_block server)
HCL
  say "starting the Nomad server at $ADDR"
  spawn "$d/pid" "$d/agent.log" "$bin" agent -config "$d/server.hcl"
}

client_up() {
  local bin="$1" n="$2" d="$STATE/$2"
  if spawned "$d/nomad.pid"; then
    # Still in the namespace of the dockerd it started with? Else its mounts (alloc secrets) are not
    # where the node's (restarted) dockerd looks: restart it.
    [ "$(readlink "/proc/$(cat "$d/nomad.pid")/ns/mnt")" = "$(readlink "$(mnt_ns "$n")")" ] && return 0
    kill_spawned "$d/nomad.pid"
  fi
  mkdir -p "$d/nomad"
  cat >"$d/client.hcl" <<HCL
name                 = "ahcl-$n"
data_dir             = "$d/nomad"
bind_addr            = "$(node_ip "$n")"
log_level            = "INFO"
disable_update_check = true
client {
  enabled           = true
  servers           = ["$SERVER_IP:24647"]
  network_interface = "eth0"
  cgroup_parent     = "/ahcl-$n"
  min_dynamic_port  = 20000
  max_dynamic_port  = 32000
  options {
    "driver.allowlist"     = "docker"
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
  meta {
    "agenthost.runtimes"       = "runc,runsc"
    "agenthost.docker-network" = "ah-nomad"
  }
}
plugin "docker" {
  config {
    endpoint       = "unix://$d/docker.sock"
    allow_runtimes   = ["runc", "runsc"]
    allow_privileged = false
    # agenthost's tasks drop every capability; only the backup job (restic, runc) adds back the three it
    # needs to restore files with their owners and modes. A job that asks for any other one is refused.
    allow_caps       = ["chown", "dac_override", "fowner"]
    auth {
      config = "$STATE/registry/docker-config/config.json"
    }
    # Workload volumes are Docker named volumes and the platform's own tasks mount the node's Docker
    # socket: both need volumes (nomad/README.md, "Security").
    volumes {
      enabled = true
    }
    gc {
      image     = false
      container = true
    }
  }
}
$(tls_block "$n")
HCL
  say "starting the Nomad client of node $n"
  spawn "$d/nomad.pid" "$d/nomad.log" nsenter --net="/var/run/netns/$(netns "$n")" --mount="$(mnt_ns "$n")" \
    "$bin" agent -config "$d/client.hcl"
}

two_ready() { [ "$(ready_clients)" = 2 ]; }

# ACLs, once per state dir: the management token (bootstrap), agenthost's namespace, its policy
# (nomad/agenthost-policy.hcl) and a client token of that policy.
acl_up() {
  mkdir -p "$ACL"
  if [ ! -f "$ACL/management.token" ]; then
    local boot
    boot="$(api -X POST acl/bootstrap)" || { echo "ACL bootstrap failed" >&2; exit 1; }
    (umask 077; python3 -c 'import json, sys; print(json.load(sys.stdin)["SecretID"])' <<<"$boot" >"$ACL/management.token")
  fi
  api -X POST -d "{\"Name\": \"$NAMESPACE\", \"Description\": \"agenthost's jobs and Variables\"}" \
    "namespace/$NAMESPACE" >/dev/null
  python3 -c '
import json, sys
print(json.dumps({"Name": "agenthost", "Description": "agenthost platform", "Rules": open(sys.argv[1]).read()}))' \
    nomad/agenthost-policy.hcl | api -X POST --data-binary @- acl/policy/agenthost >/dev/null
  if [ ! -f "$ACL/agenthost.token" ]; then
    api -X POST -d '{"Name": "agenthost", "Type": "client", "Policies": ["agenthost"]}' acl/token |
      (umask 077; python3 -c 'import json, sys; print(json.load(sys.stdin)["SecretID"])' >"$ACL/agenthost.token")
  fi
}

start() {
  local bin
  bin="$(bash infra/nomad.sh binary)"
  mkdir -p "$STATE"
  network_up
  pki
  registry_up
  server_up "$bin"
  for n in $NODES; do dockerd_up "$n"; done
  wait_for "the Nomad server at $ADDR" 120 answers || { tail -20 "$STATE/server/agent.log" >&2; exit 1; }
  acl_up
  for n in $NODES; do client_up "$bin" "$n"; done
  wait_for "two ready Nomad clients" 240 two_ready || {
    for n in $NODES; do tail -15 "$STATE/$n/nomad.log" >&2; done
    # What the server sees of each node (status, why, driver health): the state dir goes with the next stop.
    api "nodes?resources=false" 2>/dev/null | python3 -c '
import json, sys
for n in json.load(sys.stdin):
    docker = n.get("Drivers", {}).get("docker", {})
    print("node", n["Name"], n["Status"], n.get("StatusDescription", ""), "eligibility", n["SchedulingEligibility"],
          "docker healthy", docker.get("Healthy"), docker.get("HealthDescription", ""), file=sys.stderr)' || true
    exit 1
  }
  say "cluster up: $ADDR, registry https://$REGISTRY"
}

# --- stop -----------------------------------------------------------------------------------------

stop() {
  if [ -f "$PKI/cli.crt" ] && answers; then  # purge the jobs so their containers go while the clients still run
    api "jobs?namespace=*" | python3 -c '
import json, sys
for j in json.load(sys.stdin): print(j["Namespace"], j["ID"])' | while read -r ns id; do
      api -X DELETE "job/$id?purge=true&namespace=$ns" >/dev/null || true
    done
  fi
  for n in $NODES; do kill_spawned "$STATE/$n/nomad.pid"; done
  kill_spawned "$STATE/server/pid"
  for n in $NODES; do
    if [ -S "$STATE/$n/docker.sock" ]; then
      docker_node "$n" ps -aq | xargs -r docker -H "unix://$STATE/$n/docker.sock" rm -f >/dev/null 2>&1 || true
    fi
    kill_spawned "$STATE/$n/dockerd.pid"
    # What is left in the node's namespace: the clients' plugins (logmon, docker_logger), shims.
    if ip netns list | grep -qw "$(netns "$n")"; then
      ip netns pids "$(netns "$n")" | xargs -r kill 2>/dev/null || true
      sleep 1
      ip netns pids "$(netns "$n")" | xargs -r kill -9 2>/dev/null || true
    fi
  done
  kill_spawned "$STATE/registry/pid"
  for n in $NODES; do
    ip netns del "$(netns "$n")" 2>/dev/null || true
    ip link del "nclu-$n" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "/etc/docker/certs.d/$REGISTRY"
  # The host's tags of what push sent (the images stay under their own names).
  docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$REGISTRY/" | xargs -r docker rmi >/dev/null 2>&1 || true
  # Mounts the clients made under their data dirs (alloc secrets) live in the nodes' mount
  # namespaces, gone with them; the overlay mounts of the nodes' dockerd likewise.
  rm -rf "$STATE"
}

push_one() {  # image: push it to the cluster registry; print "image ref@digest"
  local image="$1" target digest
  target="$REGISTRY/$image"
  docker tag "$image" "$target"
  docker --config "$STATE/registry/docker-config" push -q "$target" >/dev/null
  digest="$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$target" | grep "^${target%:*}@" | head -1)"
  [ -n "$digest" ] || { echo "the registry did not confirm the push of $image" >&2; return 1; }
  echo "$image $digest"
}

push() {  # image...: push each local image to the cluster registry; print "image ref@digest" per image
  [ -f "$STATE/registry/docker-config/config.json" ] || { echo "the cluster is not started" >&2; exit 1; }
  # All at once: a push is mostly gzip of the image's layer on one core, and these images share no layer.
  local out image n=0 pid failed=0
  out="$(mktemp -d)"
  local pids=()
  for image in "$@"; do
    push_one "$image" >"$out/$n" &
    pids+=("$!")
    n=$((n + 1))
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  for ((i = 0; i < n; i++)); do cat "$out/$i"; done
  rm -rf "$out"
  [ "$failed" = 0 ] || exit 1
}

env_out() {
  cat <<ENV
CLUSTER_ADDR=$ADDR
CLUSTER_REGISTRY=$REGISTRY
CLUSTER_DOCKER_CONFIG=$STATE/registry/docker-config
CLUSTER_CA=$PKI/ca.crt
CLUSTER_NAMESPACE=$NAMESPACE
CLUSTER_TOKEN=$(cat "$ACL/agenthost.token")
CLUSTER_CLIENT_CERT=$PKI/agenthost.crt
CLUSTER_CLIENT_KEY=$PKI/agenthost.key
CLUSTER_MANAGEMENT_TOKEN_FILE=$ACL/management.token
CLUSTER_OPERATOR_CERT=$PKI/cli.crt
CLUSTER_OPERATOR_KEY=$PKI/cli.key
ENV
  for n in $NODES; do echo "CLUSTER_NODE_${n^^}=$(node_ip "$n") $STATE/$n/docker.sock $(netns "$n")"; done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers && two_ready; then exit 0; else exit 1; fi ;;
  env) env_out ;;
  push) shift; push "$@" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
