"""Engine definitions: names Postgres accepts, connection strings, and no password in a container's argv."""

from __future__ import annotations

from orchestrator.db_engines import command_for, connection_url, env_for, postgres_name
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
    for engine, spec in (("postgres", _spec()), ("redis", _spec(port=6379, username="default", db_name=None))):
        env = env_for(engine, spec, "s3cret-pass")  # type: ignore[arg-type]
        assert "s3cret-pass" in env.values()
        assert not any("s3cret-pass" in arg for arg in command_for(engine, spec))  # type: ignore[arg-type]


def test_memory_limits_shape_the_engine_settings() -> None:
    assert "shared_buffers=64MB" in command_for("postgres", _spec(memory_mb=256))
    redis = " ".join(command_for("redis", _spec(memory_mb=128, port=6379, username="default", db_name=None)))
    assert "--maxmemory 96mb" in redis and "--requirepass" in redis and "--appendonly yes" in redis
