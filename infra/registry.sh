#!/usr/bin/env bash
# Start the local image registry (Debian's docker-registry) that builds push to and Nomad clients pull from.
# Listens on AGENTHOST_REGISTRY (default 127.0.0.1:5000; dockerd allows plain http to 127.0.0.0/8), keeps its
# blobs under /var/lib/agenthost-registry. Idempotent: does nothing when the registry already answers.
set -euo pipefail
ADDR="${AGENTHOST_REGISTRY:-127.0.0.1:5000}"
[ -n "$ADDR" ] || exit 0   # an empty setting: builds keep their images local
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
up() { curl -fs -o /dev/null --max-time 2 "http://$ADDR/v2/"; }
up && exit 0

CONF=/etc/agenthost/registry.yml
STORE=/var/lib/agenthost-registry
$SUDO mkdir -p /etc/agenthost "$STORE"
$SUDO tee "$CONF.new" >/dev/null <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STORE
  delete:
    enabled: true
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
YML
$SUDO mv "$CONF.new" "$CONF"
say "starting the image registry on $ADDR"
. "$(dirname "$0")/spawn.sh"
spawn - /dev/null $SUDO sh -c "exec docker-registry serve '$CONF' >/var/log/agenthost-registry.log 2>&1"
for _ in $(seq 40); do up && exit 0; sleep 0.25; done
echo "the registry did not start on $ADDR; see /var/log/agenthost-registry.log" >&2
exit 1
