"""The tenant's user inside its database engine: what it may do, and how the control plane makes it.

The engine's superuser (Postgres ``postgres``, the Redis ``default`` user) belongs to the platform:
its password is generated at create, stored encrypted and never shown to the tenant. The tenant
gets its own user that owns its data and nothing more:

- **Postgres**: a role with LOGIN and no other attribute, owning the tenant's database. Server-side
  files and programs (``COPY ... PROGRAM``, ``pg_read_file``, ``lo_import``) stay with the
  superuser, and PUBLIC may no longer connect to the cluster's other databases. The control
  plane creates the role and the database after the server first accepts connections, by psql as
  the superuser over the container's local socket (trusted there, unreachable from outside), with
  the SQL on stdin; every step is idempotent, so it runs again whenever the container starts.
- **Redis**: an ACL user allowed every command except the ``@admin`` and ``@dangerous`` ones,
  given back the few ``@dangerous`` commands that only read or wipe data the tenant owns anyway
  (the whole instance is the tenant's). The ACL file is written by the start shell to the /tmp
  tmpfs from the environment, which carries only SHA-256 hashes of the passwords.

Records made before tenant users existed have no ``admin_user``: their tenant user is the
superuser, and they keep running that way.
"""

from __future__ import annotations

import hashlib

from ..backends.base import Backend, ExecSpec
from ..errors import WorkloadFailed
from ..images.databases import PG_SPARE_DB
from ..models import DatabaseRecord, DatabaseSpec, untrusted
from ..secrets import mask_secrets

__all__ = [
    "POSTGRES_ADMIN",
    "REDIS_ADMIN",
    "REDIS_TENANT_COMMANDS",
    "postgres_setup_sql",
    "redis_acl",
    "setup_tenant_role",
]

POSTGRES_ADMIN = "postgres"
REDIS_ADMIN = "default"

# FLUSHDB/FLUSHALL, INFO, KEYS and SORT are @dangerous for being slow or keyspace-wide, not for reaching
# past the instance; MIGRATE (connects out), RESTORE (parses a raw payload) and SWAPDB stay refused.
REDIS_TENANT_COMMANDS = "+@all -@admin -@dangerous +flushdb +flushall +info +keys +sort +sort_ro"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def postgres_setup_sql(spec: DatabaseSpec, password: str) -> str:
    """psql input that makes the tenant's role and database, or puts them back as they should be."""
    role, db = spec.username, spec.db_name or spec.username
    return "\n".join(
        [
            # A failing statement is logged with its text, and this text holds the tenant's password.
            "SET log_min_error_statement = panic;",
            f"SELECT 'CREATE ROLE {_ident(role)}' WHERE NOT EXISTS"
            f" (SELECT FROM pg_roles WHERE rolname = {_literal(role)}) \\gexec",
            f"ALTER ROLE {_ident(role)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            f" PASSWORD {_literal(password)};",
            # The image's spare database, when the cluster has one, is a fresh copy of template1 already.
            f"SELECT 'ALTER DATABASE {_ident(PG_SPARE_DB)} RENAME TO {_ident(db)}' WHERE NOT EXISTS"
            f" (SELECT FROM pg_database WHERE datname = {_literal(db)}) AND EXISTS"
            f" (SELECT FROM pg_database WHERE datname = {_literal(PG_SPARE_DB)}) \\gexec",
            f"SELECT 'CREATE DATABASE {_ident(db)} OWNER {_ident(role)}' WHERE NOT EXISTS"
            f" (SELECT FROM pg_database WHERE datname = {_literal(db)}) \\gexec",
            f"ALTER DATABASE {_ident(db)} OWNER TO {_ident(role)};",
            # Every role may connect to every database by default; the tenant's own is the only one for it.
            f"REVOKE ALL ON DATABASE postgres, template1, {_ident(db)} FROM PUBLIC;",
            "",
        ]
    )


async def setup_tenant_role(backend: Backend, rec: DatabaseRecord, password: str, admin_password: str) -> bool:
    """Make the tenant's Postgres role and database in a running server. Returns False when the exec
    did not get to run to its end (the container stopped or restarted): try again once it runs.

    Raises: WorkloadFailed when Postgres refused the setup."""
    if rec.engine != "postgres" or rec.spec.admin_user is None:
        return True
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp", "-U", rec.spec.admin_user, "-d", "postgres"]
    sql = postgres_setup_sql(rec.spec, password).encode()
    res = await backend.exec(rec.id, ExecSpec(argv, timeout_s=60, stdin=sql, env={"PGCONNECT_TIMEOUT": "10"}))
    if res.timed_out or res.exit_code is None:
        return False
    if res.exit_code != 0:
        tail = mask_secrets((res.stderr or res.stdout)[-2000:], [password, admin_password])
        raise WorkloadFailed(
            f"setting up the tenant's role in {rec.name} failed (exit {res.exit_code}):\n{untrusted(tail)}",
            "read the output above; delete and create the database again if it persists",
        )
    return True


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def redis_acl(spec: DatabaseSpec, password: str, admin_password: str) -> str:
    """The ACL file's lines: the platform's ``default`` user and the tenant's, by password hash."""
    admin = spec.admin_user or REDIS_ADMIN
    return (
        f"user {admin} on #{_sha256(admin_password)} ~* &* +@all\n"
        f"user {spec.username} on #{_sha256(password)} ~* &* {REDIS_TENANT_COMMANDS}"
    )
