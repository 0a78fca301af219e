#!/usr/bin/env bash
# Set up this host and run the platform: MCP at http://HOST:PORT/mcp, REST at http://HOST:PORT/v1.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST="${AGENTHOST_HOST:-127.0.0.1}"; PORT="${AGENTHOST_PORT:-8080}"
export AGENTHOST_DATA_DIR="${AGENTHOST_DATA_DIR:-$PWD/agenthost-data}"
bash infra/setup.sh
if [ ! -f "$AGENTHOST_DATA_DIR/master.key" ]; then
  .venv/bin/agenthost init
fi
BIN="$PWD/.venv/bin/agenthost"
# Caddy, the HTTPS proxy in front of services, unless one already answers on the admin socket or ingress is off.
SOCK="${AGENTHOST_INGRESS_ADMIN_SOCKET:-$AGENTHOST_DATA_DIR/ingress/admin.sock}"
if [ "${AGENTHOST_INGRESS:-true}" != false ] \
  && ! curl -sf --unix-socket "$SOCK" -H "Host: agenthost-ingress" http://agenthost-ingress/config/ >/dev/null 2>&1; then
  nohup "$BIN" ingress run >>"$AGENTHOST_DATA_DIR/ingress.log" 2>&1 &
  echo "Caddy (HTTPS proxy) started; log: $AGENTHOST_DATA_DIR/ingress.log" >&2
fi
cat <<TXT

Connect an agent (use the admin key printed by 'agenthost init', or one from 'agenthost tenant create NAME'):

  Claude Code, over HTTP:
    claude mcp add --transport http agenthost http://$HOST:$PORT/mcp --header "Authorization: Bearer <KEY>"
  Claude Code, over stdio:
    claude mcp add agenthost -e AGENTHOST_API_KEY=<KEY> -e AGENTHOST_DATA_DIR=$AGENTHOST_DATA_DIR -- $BIN mcp
  Claude Desktop (claude_desktop_config.json):
    {"mcpServers": {"agenthost": {"command": "$BIN", "args": ["mcp"],
      "env": {"AGENTHOST_API_KEY": "<KEY>", "AGENTHOST_DATA_DIR": "$AGENTHOST_DATA_DIR"}}}}
  REST:
    curl -s -H "Authorization: Bearer <KEY>" -X POST http://$HOST:$PORT/v1/tools/whoami -d '{}'

TXT
exec "$BIN" serve --host "$HOST" --port "$PORT"
