"""A tenant's database credentials grant its data and nothing more: no superuser, no admin commands.

Each attack runs as a tenant would: from inside its own service, through the MCP `exec` tool, with the
connection string `link_database` gave that service.
"""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest

from .harness import AgentHost, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

# SQLSTATE 42501 (insufficient_privilege): the same refusal on every Postgres version, whatever its wording.
_DENIED = "42501"


async def _psql(client: Any, sql: str, url: str = '"$DATABASE_URL"') -> dict[str, Any]:
    """Run SQL with psql in service `app`; errors are verbose, so they carry their SQLSTATE."""
    return await call(
        client,
        "exec",
        {
            "service": "app",
            "command": f"psql {url} -X -qAt -v ON_ERROR_STOP=1 -v VERBOSITY=verbose",
            "stdin": f"{sql}\n",
            "timeout_s": 60,
        },
    )


async def _redis(client: Any, *args: str, timeout_s: float = 30) -> dict[str, Any]:
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)
    return await call(
        client,
        "exec",
        {
            "service": "worker",
            "command": f'redis-cli -u "$REDIS_URL" --no-auth-warning {quoted}',
            "timeout_s": timeout_s,
        },
    )


def _text(shown: str) -> str:
    """Workload output without the untrusted-data markers around it."""
    return shown.split("\n", 1)[1].rsplit("\n", 1)[0].strip()


def _engine_env(docker_client: docker.DockerClient, database_id: str) -> dict[str, str]:
    env = docker_client.containers.get(f"ah-{database_id}").attrs["Config"]["Env"]
    return dict(item.split("=", 1) for item in env)


async def test_attack_postgres_tenant_role_is_no_superuser(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("pg-attacker")
    async with connect(agenthost, key, "stdio") as client:
        db = await call(client, "create_database", {"name": "vault", "engine": "postgres"})
        assert db["status"] == "running", db
        await call(
            client,
            "deploy_service",
            {"name": "app", "image": agenthost.settings.image_postgres, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "vault", "service": "app"})

        # Ordinary work in its own database: tables, schemas, a trusted extension.
        work = await _psql(
            client,
            "CREATE TABLE t (v text); INSERT INTO t VALUES ('mine'); CREATE SCHEMA app;"
            " CREATE TABLE app.items (id serial PRIMARY KEY); CREATE EXTENSION pgcrypto;"
            " SELECT v FROM t; SELECT length(gen_random_bytes(4));",
        )
        assert work["exit_code"] == 0, work
        assert "mine\n4" in work["stdout"], work

        attacks = [
            "COPY (SELECT 1) TO PROGRAM 'id';",
            "ALTER ROLE CURRENT_USER SUPERUSER;",
            "CREATE ROLE x SUPERUSER;",
            "SELECT pg_read_file('/etc/passwd');",
            "SELECT lo_import('/etc/passwd');",
            "COPY t FROM '/etc/passwd';",
            "ALTER SYSTEM SET log_statement = 'all';",
        ]
        outcomes = {sql: await _psql(client, sql) for sql in attacks}
        allowed = {sql: out for sql, out in outcomes.items() if out["exit_code"] == 0 or _DENIED not in out["stderr"]}
        assert not allowed, json.dumps(allowed, indent=1)
        su = await _psql(client, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user;")
        assert (su["exit_code"], _text(su["stdout"])) == (0, "f"), su

        # The cluster's other databases are closed to the tenant's role.
        other = await _psql(client, "SELECT 1;", url='"${DATABASE_URL%/*}/postgres"')
        assert other["exit_code"] != 0 and "permission denied for database" in other["stderr"], other

        # The superuser's password is the platform's alone: the tenant's is not it, and no tool shows it.
        revealed = await call(client, "database_connection_string", {"database": "vault", "reveal": True})
        tenant_user, tenant_password = revealed["url"].split("//")[1].split("@")[0].split(":")
        admin_password = _engine_env(docker_client, db["id"])["POSTGRES_PASSWORD"]
        assert tenant_user == "vault" and admin_password != tenant_password
        as_postgres = await _psql(
            client, "SELECT 1;", url=f'"postgresql://postgres:{tenant_password}@vault:5432/postgres"'
        )
        assert as_postgres["exit_code"] != 0 and "password authentication failed" in as_postgres["stderr"], as_postgres
        env_dump = await call(client, "exec", {"service": "app", "command": ["env"]})
        outputs = [
            revealed,
            env_dump,
            await call(client, "get_database", {"database": "vault"}),
            await call(client, "list_databases"),
            await call(client, "list_env", {"service": "app", "reveal": True}),
            await call(client, "service_logs", {"service": "app"}),
            await call(client, "get_service", {"service": "app"}),
        ]
        assert admin_password not in json.dumps(outputs)

        await call(client, "delete_service", {"service": "app", "confirm": True})
        await call(client, "delete_database", {"database": "vault", "confirm": True})


async def test_attack_postgres_restore_runs_the_tenants_code_as_the_tenant(agenthost: AgentHost) -> None:
    """A dump is the tenant's: a function of its own that runs during the restore (here in a CHECK
    constraint, evaluated for every restored row) must not find a superuser session to fall back to."""
    key = agenthost.tenant("pg-restore-attacker")
    async with connect(agenthost, key, "stdio") as client:
        await call(client, "create_database", {"name": "trap", "engine": "postgres"})
        await call(
            client,
            "deploy_service",
            {"name": "app", "image": agenthost.settings.image_postgres, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "trap", "service": "app"})
        setup = await _psql(
            client,
            "CREATE FUNCTION escalate() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
            " RESET ROLE; ALTER ROLE trap SUPERUSER; RETURN true;"
            " EXCEPTION WHEN OTHERS THEN RETURN true; END $$;"
            " CREATE TABLE t (v int CHECK (escalate())); INSERT INTO t VALUES (1), (2);"
            " CREATE EXTENSION pgcrypto;",
        )
        assert setup["exit_code"] == 0, setup
        backup = await call(client, "create_backup", {"database": "trap"})
        assert backup["status"] == "complete", backup

        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]
        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "trap-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]
        await call(client, "link_database", {"database": "trap-copy", "service": "app", "env_var": "COPY_URL"})

        owners = (
            "SELECT r.rolsuper, pg_get_userbyid(d.datdba), (SELECT tableowner FROM pg_tables WHERE tablename = 't'),"
            " (SELECT count(*) FROM t), (SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pgcrypto')"
            " FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database();"
        )
        got = await _psql(client, owners)
        assert (got["exit_code"], _text(got["stdout"])) == (0, "f|trap|trap|2|trap"), got
        got = await _psql(client, owners, url='"$COPY_URL"')
        assert (got["exit_code"], _text(got["stdout"])) == (0, "f|trap_copy|trap_copy|2|trap_copy"), got

        await call(client, "delete_service", {"service": "app", "confirm": True})
        for name in ("trap", "trap-copy"):
            await call(client, "delete_database", {"database": name, "confirm": True})
        await call(client, "delete_backup", {"backup_id": backup["id"], "confirm": True})


async def test_attack_redis_tenant_user_has_no_admin_commands(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("redis-attacker")
    async with connect(agenthost, key, "http") as client:
        db = await call(client, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 64})
        assert db["status"] == "running", db
        await call(
            client,
            "deploy_service",
            {"name": "worker", "image": agenthost.settings.image_redis, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "cache", "service": "worker"})
        revealed = await call(client, "database_connection_string", {"database": "cache", "reveal": True})
        tenant_user, tenant_password = revealed["url"].split("//")[1].split("@")[0].split(":")

        # Ordinary commands work.
        for args, expected in [
            (("SET", "k", "v"), "OK"),
            (("GET", "k"), "v"),
            (("INCR", "n"), "1"),
            (("EXPIRE", "k", "600"), "1"),
            (("HSET", "h", "f", "x"), "1"),
            (("LPUSH", "l", "a"), "1"),
            (("SADD", "s", "a"), "1"),
            (("PUBLISH", "ch", "hi"), "0"),
            (("EVAL", "return redis.call('GET', KEYS[1])", "1", "k"), "v"),
            (("KEYS", "k"), "k"),
            (("FLUSHDB",), "OK"),
        ]:
            got = await _redis(client, *args)
            assert (got["exit_code"], _text(got["stdout"])) == (0, expected), (args, got)

        attacks = [
            ("CONFIG", "SET", "dir", "/tmp"),
            ("CONFIG", "GET", "*"),
            ("MODULE", "LIST"),
            ("REPLICAOF", "127.0.0.1", "6380"),
            ("SLAVEOF", "127.0.0.1", "6380"),
            ("ACL", "LIST"),
            ("ACL", "SETUSER", "cache", "+@all"),
            ("SAVE",),
            ("BGSAVE",),
            ("BGREWRITEAOF",),
            ("MIGRATE", "127.0.0.1", "6380", "k", "0", "1000"),
            ("MONITOR",),
            ("SHUTDOWN", "NOSAVE"),
        ]
        outcomes = {" ".join(args): await _redis(client, *args, timeout_s=10) for args in attacks}
        allowed = {cmd: out for cmd, out in outcomes.items() if "NOPERM" not in out["stdout"]}
        assert not allowed, json.dumps(allowed, indent=1)
        # DEBUG is a protected command, refused to every connection (the platform's too) before any ACL.
        debug = await _redis(client, "DEBUG", "SLEEP", "0")
        assert "ERR DEBUG command not allowed" in debug["stdout"], debug

        # The default user is the platform's: the tenant's password does not open it.
        as_default = await call(
            client,
            "exec",
            {
                "service": "worker",
                "command": ["redis-cli", "-h", "cache", "--user", "default", "--pass", tenant_password, "PING"],
            },
        )
        assert "AUTH failed" in as_default["stderr"] and "NOAUTH" in as_default["stdout"], as_default
        assert tenant_user == "cache"
        assert (await call(client, "get_database", {"database": "cache"}))["status"] == "running"

        await call(client, "delete_service", {"service": "worker", "confirm": True})
        await call(client, "delete_database", {"database": "cache", "confirm": True})
