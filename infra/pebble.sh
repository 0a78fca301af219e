#!/usr/bin/env bash
# Pebble, Let's Encrypt's ACME test server (MPL-2.0), for the e2e test of the HTTPS proxy's ACME path.
#
#   infra/pebble.sh binary   print the path of the pebble binary, building it first when missing
#
# No package carries it, but it is a Go module: built from the module proxy's source once and cached
# (about a minute on 2 cores) under ~/.cache/agenthost. Only tests use it; production uses a real ACME CA.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

PEBBLE_VERSION=v2.10.3
CACHE="${AGENTHOST_CACHE_DIR:-$HOME/.cache/agenthost}"
BIN="$CACHE/pebble-$PEBBLE_VERSION"

go_bin() {
  command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; } || {
    echo "the Go toolchain is needed to build Pebble; install it and retry" >&2
    exit 1
  }
}

build() {
  [ -x "$BIN" ] && return 0
  local go src work rc=0
  go="$(go_bin)"
  say "building Pebble $PEBBLE_VERSION from source (cached at $BIN)"
  work="$(mktemp -d)"
  src="$(cd "$work" && GOFLAGS=-mod=mod "$go" mod download -json "github.com/letsencrypt/pebble/v2@$PEBBLE_VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d.get("Error") or print(d["Dir"]))')"
  if ! grep -q "Mozilla Public License" "$src/LICENSE"; then
    echo "$src/LICENSE is not the MPL-2.0: refusing to build Pebble" >&2
    exit 1
  fi
  mkdir -p "$CACHE"
  cp -r "$src" "$work/pebble" && chmod -R u+w "$work/pebble" && (
    cd "$work/pebble"
    GOFLAGS=-mod=mod "$go" build -o "$BIN.tmp" ./cmd/pebble
  ) || rc=$?
  rm -rf "$work"
  [ "$rc" = 0 ] || { echo "building Pebble $PEBBLE_VERSION failed (rc=$rc)" >&2; exit "$rc"; }
  mv "$BIN.tmp" "$BIN"
}

case "${1:-}" in
  binary) build; echo "$BIN" ;;
  *) echo "usage: $0 binary" >&2; exit 2 ;;
esac
