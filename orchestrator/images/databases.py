"""What the platform's own Postgres and Redis images hold, so they behave like the official ones.

The platform relies on the same contract the official ``postgres`` and ``redis`` images
offer: the password comes from the environment, an empty data volume is initialised on
first start, the data directory lives on the volume, and the server runs as its own
unprivileged user (so no capability is needed). These are the entrypoint and the setup
that give the Debian packages that contract; ``images.py`` turns them into recipes.
"""

from __future__ import annotations

__all__ = [
    "PG_BIN",
    "PG_DATA",
    "PG_SPARE_DB",
    "PG_TEMPLATE_MARK",
    "POSTGRES_ENTRYPOINT",
    "POSTGRES_SETUP",
    "REDIS_SETUP",
]

PG_MAJOR = "15"
PG_BIN = f"/usr/lib/postgresql/{PG_MAJOR}/bin"

# Where the platform keeps a database's cluster: a directory on the data volume mounted at its parent.
PG_DATA = "/var/lib/postgresql/data/pgdata"
# The image holds a cluster at PG_DATA, initialised when the image was built, with this file in it: Docker
# copies it into an empty volume mounted at the parent, and a first start then only sets the superuser's
# password (and makes the database). Under gVisor, initdb is slow: a container limited to half a core was
# ready in 22.9 s with it, 3.2 s from the template (the copy is dockerd's, outside the sandbox). The
# superuser is postgres, with no password until that first start.
PG_TEMPLATE_MARK = ".agenthost-template"
# A database the template holds besides postgres: the platform renames it to the tenant's database rather
# than copying template1 again (CREATE DATABASE copies some 300 files, over a second under gVisor).
PG_SPARE_DB = "agenthost_spare"
# What initdb is given and what is added to its configuration, at a first start and for the template alike.
_INITDB_OPTIONS = "--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256"
_HBA_LINE = "host all all all scram-sha-256"
_LISTEN_LINE = "listen_addresses = '*'"

# Like the official image (whose STOPSIGNAL is SIGINT): POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres),
# POSTGRES_DB (default: the user), PGDATA, POSTGRES_INITDB_ARGS; a new cluster only when PGDATA holds none.
# The template serves the superuser postgres with no initdb arguments; it is removed for any other first start,
# which runs initdb (so does a PGDATA the template was not copied to). A password must be one line.
POSTGRES_ENTRYPOINT = f"""#!/bin/sh
set -eu
case "${{1:-}}" in -*) set -- postgres "$@" ;; esac
if [ "${{1:-}}" = postgres ] && {{ [ ! -s "$PGDATA/PG_VERSION" ] || [ -e "$PGDATA/{PG_TEMPLATE_MARK}" ]; }}; then
  : "${{POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}}"
  user="${{POSTGRES_USER:-postgres}}"
  db="${{POSTGRES_DB:-$user}}"
  nl='
'
  # initdb would keep only its first line (and single-user mode would end a statement inside it).
  case "$POSTGRES_PASSWORD" in
    *"$nl"*) echo "POSTGRES_PASSWORD holds a newline: give a password of one line" >&2; exit 1 ;;
  esac
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [ -e "$PGDATA/{PG_TEMPLATE_MARK}" ]; then
    if [ "$user" = postgres ] && [ -z "${{POSTGRES_INITDB_ARGS:-}}" ]; then
      quoted="$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")"
      sql="ALTER ROLE postgres PASSWORD '$quoted';"
      if [ "$db" != postgres ]; then
        sql="$sql$nl${{nl}}CREATE DATABASE \\"$db\\";"
      fi
      # Single-user mode goes on after an error and exits 0: its errors are read from stderr. No statement
      # is logged, even one that fails: it holds the password. A database made by a start cut short before
      # the mark went is the one wanted.
      err="$(printf '%s\\n\\n' "$sql" \\
        | postgres --single -D "$PGDATA" -j -c log_min_error_statement=panic postgres 2>&1 >/dev/null)"
      if printf '%s\\n' "$err" | grep -E '\\] (ERROR|FATAL|PANIC):' \\
        | grep -vF "ERROR:  database \\"$db\\" already exists" | grep -q .; then
        printf '%s\\n' "$err" >&2
        exit 1
      fi
      rm -f "$PGDATA/{PG_TEMPLATE_MARK}"
    else
      # Another superuser or initdb's own options: the template is no one's data yet, and not this cluster.
      find "$PGDATA" -mindepth 1 -delete
    fi
  fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" {_INITDB_OPTIONS} ${{POSTGRES_INITDB_ARGS:-}} >/dev/null
    rm -f "$pwfile"
    echo "{_HBA_LINE}" >> "$PGDATA/pg_hba.conf"
    echo "{_LISTEN_LINE}" >> "$PGDATA/postgresql.conf"
    if [ "$db" != postgres ]; then
      echo "CREATE DATABASE \\"$db\\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
  fi
  echo "agenthost postgres: initialised $PGDATA (database $db, user $user)"
fi
if [ "${{1:-}}" != postgres ]; then
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

# The template is made as a first start's initdb makes a cluster (the same options and the same two lines of
# configuration), except that the chroot has no /dev/shm: a container has, and initdb there picks posix.
POSTGRES_SETUP = f"""
pg_dropcluster {PG_MAJOR} main 2>/dev/null || true
rm -rf /var/lib/postgresql/{PG_MAJOR} /etc/postgresql/{PG_MAJOR}
install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
install -d -o postgres -g postgres -m 3777 /var/run/postgresql
runuser -u postgres -- {PG_BIN}/initdb -D {PG_DATA} -U postgres {_INITDB_OPTIONS} >/dev/null
echo "{_HBA_LINE}" >> {PG_DATA}/pg_hba.conf
echo "{_LISTEN_LINE}" >> {PG_DATA}/postgresql.conf
printf 'CREATE DATABASE {PG_SPARE_DB};\\n\\n' \\
  | runuser -u postgres -- {PG_BIN}/postgres --single -D {PG_DATA} -j postgres >/dev/null
sed -i 's/^dynamic_shared_memory_type = .*/dynamic_shared_memory_type = posix/' {PG_DATA}/postgresql.conf
runuser -u postgres -- touch {PG_DATA}/{PG_TEMPLATE_MARK}
"""

REDIS_SETUP = """
install -d -o redis -g redis -m 750 /data
"""
