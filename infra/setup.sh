#!/usr/bin/env bash
# Install and start what agenthost needs on a Debian host. Idempotent: a second run takes seconds.
#   apt packages, dockerd with the runsc runtime, the Python venv, the platform's local images, Caddy.
set -euo pipefail
cd "$(dirname "$0")/.."
. infra/spawn.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

PACKAGES=(docker.io runsc restic debootstrap docker-registry iptables iproute2 openssl git curl python3-venv caddy ${AGENTHOST_EXTRA_APT:-})
missing=()
for pkg in "${PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

rc=0; $SUDO python3 infra/docker_daemon_config.py /etc/docker/daemon.json || rc=$?
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl start docker
  else
    spawn - /dev/null $SUDO sh -c 'exec dockerd >/var/log/agenthost-dockerd.log 2>&1'
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/agenthost-dockerd.log" >&2; exit 1; }
elif [ "$rc" = 10 ]; then
  say "reloading dockerd runtimes"
  $SUDO pkill -HUP -x dockerd
  for _ in $(seq 20); do docker info 2>/dev/null | grep runsc >/dev/null && break; sleep 0.5; done
fi
docker info 2>/dev/null | grep "runsc" >/dev/null || { echo "dockerd does not list the runsc runtime" >&2; exit 1; }
[ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = runsc ] \
  || echo "warning: dockerd's default runtime is not runsc: build RUN steps run without gVisor" >&2

bash infra/registry.sh

# agenthost runs Caddy itself (`agenthost ingress run`, started by infra/run.sh): Debian's caddy.service would
# hold port 80 with its default site and open an admin endpoint on a TCP port.
if [ -d /run/systemd/system ] && { systemctl is-enabled caddy >/dev/null 2>&1 || systemctl is-active caddy >/dev/null 2>&1; }; then
  say "disabling Debian's caddy.service (agenthost runs Caddy itself)"
  $SUDO systemctl disable --now caddy
fi

stamp=.venv/.agenthost-installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "python venv (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  touch "$stamp"
fi

say "platform images (agenthost images build)"
$SUDO .venv/bin/agenthost images build
