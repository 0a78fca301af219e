"""Engine definitions and tenant users: names Postgres accepts, connection strings, no password in a container's
argv, and what the tenant's user is allowed."""

from __future__ import annotations

import hashlib

import pytest

from orchestrator.databases.engines import command_for, connection_url, env_for, postgres_name, redis_user
from orchestrator.databases.roles import REDIS_TENANT_COMMANDS, postgres_setup_sql
from orchestrator.errors import AgentHostError
from orchestrator.models import DatabaseSpec


def _spec(**kw: object) -> DatabaseSpec:
    base: dict[str, object] = {
        "image": "img",
        "runtime": "runsc",
        "memory_mb": 256,
        "cpus": 0.5,
        "volume": "v",
        "port": 5432,
        "username": "app_db",
        "db_name": "app_db",
    }
    return DatabaseSpec.model_validate({**base, **kw})


def test_postgres_names_avoid_dashes_and_the_reserved_pg_prefix() -> None:
    assert postgres_name("app-db") == "app_db"
    assert postgres_name("pg") == "pg"
    assert postgres_name("pg-copy") == "db_pg_copy"
    assert postgres_name("pgx") == "pgx"


def test_connection_urls_per_engine() -> None:
    assert connection_url("postgres", _spec(), "pw", "app-db", 5432) == "postgresql://app_db:pw@app-db:5432/app_db"
    redis = _spec(port=6379, username="default", db_name=None)
    assert connection_url("redis", redis, "pw", "cache", 6379) == "redis://default:pw@cache:6379/0"


def test_the_password_reaches_the_engine_through_env_never_argv() -> None:
    """A record made before tenant users: its one password is the superuser's."""
    for engine, spec in (("postgres", _spec()), ("redis", _spec(port=6379, username="default", db_name=None))):
        env = env_for(engine, spec, "s3cret-pass", None)  # type: ignore[arg-type]
        assert "s3cret-pass" in env.values()
        assert not any("s3cret-pass" in arg for arg in command_for(engine, spec))  # type: ignore[arg-type]


def test_postgres_is_initialised_with_only_the_platforms_superuser() -> None:
    spec = _spec(admin_user="postgres")
    env = env_for("postgres", spec, "tenant-pass", "admin-pass")
    assert env["POSTGRES_USER"] == "postgres" and env["POSTGRES_PASSWORD"] == "admin-pass"
    assert "POSTGRES_DB" not in env and "tenant-pass" not in env.values()
    assert not any("pass" in arg for arg in command_for("postgres", spec))
    assert connection_url("postgres", spec, "tenant-pass", "app-db", 5432).startswith("postgresql://app_db:")


def test_a_record_with_its_own_superuser_never_falls_back_to_the_tenant_as_superuser() -> None:
    for engine, spec in (("postgres", _spec(admin_user="postgres")), ("redis", _spec(admin_user="default"))):
        with pytest.raises(AgentHostError, match="superuser's password is missing"):
            env_for(engine, spec, "tenant-pass", None)  # type: ignore[arg-type]


def test_redis_gets_an_acl_file_from_env_with_password_hashes_only() -> None:
    spec = _spec(port=6379, username="cache", db_name=None, admin_user="default")
    env = env_for("redis", spec, "tenant-pass", "admin-pass")
    admin_line, tenant_line = env["AH_REDIS_ACL"].splitlines()
    assert admin_line == f"user default on #{hashlib.sha256(b'admin-pass').hexdigest()} ~* &* +@all"
    assert tenant_line.startswith(f"user cache on #{hashlib.sha256(b'tenant-pass').hexdigest()} ~* &* +@all")
    assert tenant_line.endswith(REDIS_TENANT_COMMANDS) and "-@admin -@dangerous" in REDIS_TENANT_COMMANDS
    assert not any("pass" in value for value in env.values())
    shell = command_for("redis", spec)[-1]
    assert "--aclfile /tmp/" in shell and "requirepass" not in shell and "pass" not in shell
    assert connection_url("redis", spec, "tenant-pass", "cache", 6379) == "redis://cache:tenant-pass@cache:6379/0"


def test_tenant_users_never_take_the_superusers_or_a_reserved_name() -> None:
    assert [postgres_name(n) for n in ("postgres", "public", "none", "pg-x")] == [
        "db_postgres",
        "db_public",
        "db_none",
        "db_pg_x",
    ]
    assert redis_user("default") == "db_default" and redis_user("cache") == "cache"


def test_postgres_setup_makes_an_owner_that_is_nothing_more() -> None:
    sql = postgres_setup_sql(_spec(username='we"ird', db_name="app"), "it's")
    assert 'ALTER ROLE "we""ird" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS' in sql
    assert "PASSWORD 'it''s';" in sql and "rolname = 'we\"ird'" in sql
    assert 'CREATE DATABASE "app" OWNER "we""ird"' in sql and 'ALTER DATABASE "app" OWNER TO "we""ird";' in sql
    assert 'REVOKE ALL ON DATABASE postgres, template1, "app" FROM PUBLIC;' in sql
    # The image's spare database becomes the tenant's when there is one and the tenant's is not there yet.
    assert 'ALTER DATABASE "agenthost_spare" RENAME TO "app"' in sql
    assert sql.index("RENAME TO") < sql.index("CREATE DATABASE")
    # The rename and both creates are conditional (idempotent), and the password never reaches the server's log.
    assert sql.count("WHERE NOT EXISTS") == 3 and sql.startswith("SET log_min_error_statement = panic;")


def test_memory_limits_shape_the_engine_settings() -> None:
    assert "shared_buffers=64MB" in command_for("postgres", _spec(memory_mb=256))
    redis = " ".join(command_for("redis", _spec(memory_mb=128, port=6379, username="default", db_name=None)))
    assert "--maxmemory 96mb" in redis and "--requirepass" in redis and "--appendonly yes" in redis
