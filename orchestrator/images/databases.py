"""What the platform's own Postgres and Redis images hold, so they behave like the official ones.

The platform relies on the same contract the official ``postgres`` and ``redis`` images
offer: the password comes from the environment, an empty data volume is initialised on
first start, the data directory lives on the volume, and the server runs as its own
unprivileged user (so no capability is needed). These are the entrypoint and the setup
that give the Debian packages that contract; ``images.py`` turns them into recipes.
"""

from __future__ import annotations

__all__ = ["PG_BIN", "POSTGRES_ENTRYPOINT", "POSTGRES_SETUP", "REDIS_SETUP"]

PG_MAJOR = "15"
PG_BIN = f"/usr/lib/postgresql/{PG_MAJOR}/bin"

# Like the official image (whose STOPSIGNAL is SIGINT): POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres),
# POSTGRES_DB (default: the user), PGDATA; initdb only when PGDATA holds no cluster yet.
POSTGRES_ENTRYPOINT = """#!/bin/sh
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  pwfile="$(mktemp)"
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \\
    --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \\"$db\\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "agenthost postgres: initialised $PGDATA (database $db, user $user)"
fi
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
# docker import cannot set STOPSIGNAL, and SIGTERM would make postgres wait for every client
# to leave: turn the engine's TERM into the fast shutdown (INT) the official image asks for.
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
status=0
while :; do
  wait "$pid" && status=0 || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
"""

POSTGRES_SETUP = f"""
pg_dropcluster {PG_MAJOR} main 2>/dev/null || true
rm -rf /var/lib/postgresql/{PG_MAJOR} /etc/postgresql/{PG_MAJOR}
install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
install -d -o postgres -g postgres -m 3777 /var/run/postgresql
"""

REDIS_SETUP = """
install -d -o redis -g redis -m 750 /data
"""
