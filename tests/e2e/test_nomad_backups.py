"""Backups on Nomad: restic runs as a batch job on the node that holds the data, to the tenant's S3 repository
(moto on 127.0.0.1, which the dev agent's nodes reach on the host's network), its credentials from the job's
Nomad Variable; restores into the same database and into a new one placed wherever the scheduler finds room."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import CONFORMANCE_ENV
from .harness import AgentHost, call, connect, until
from .nomad_agent import NOMAD_DEV_SIZES, nomad_get, purge_tenants
from .s3 import backup_env, moto_s3
from .test_backups import FILES_SUM

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NOTES_SUM = "psql \"$DATABASE_URL\" -qAt -c \"SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM notes\""


@pytest.fixture(scope="module")
def nomad_s3_host(nomad_agent: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    with moto_s3(make_bucket=True) as endpoint:
        host = AgentHost(
            data_dir=Path(tmp_path_factory.mktemp("agenthost-nomad-s3")),
            env={
                **CONFORMANCE_ENV,
                **NOMAD_DEV_SIZES,
                "AGENTHOST_BACKEND": "nomad",
                "AGENTHOST_NOMAD_ADDR": nomad_agent,
                **backup_env(endpoint),
            },
        )
        try:
            host.init()
            yield host
        finally:
            host.stop()
            purge_tenants(host)


async def _sh(client: Any, service: str, script: str) -> str:
    out = await call(client, "exec", {"service": service, "command": script, "timeout_s": 300})
    assert out["exit_code"] == 0, out
    text: str = out["stdout"]
    return text


async def test_postgres_backs_up_on_its_node_and_restores_over_itself_and_into_a_new_database(
    nomad_s3_host: AgentHost,
) -> None:
    host = nomad_s3_host
    key = host.tenant("nbk-pg")
    async with connect(host, key, "stdio") as client:
        await call(client, "create_database", {"name": "pg", "engine": "postgres"})
        await call(
            client,
            "deploy_service",
            {"name": "app", "image": host.settings.image_postgres, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "pg", "service": "app"})
        await _sh(
            client,
            "app",
            'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q -c "CREATE TABLE notes (id int PRIMARY KEY, body text)"'
            ' -c "INSERT INTO notes SELECT g, md5(random()::text) FROM generate_series(1, 2000) g"',
        )
        before = await _sh(client, "app", NOTES_SUM)

        backup = await call(client, "create_backup", {"database": "pg"})
        assert backup["status"] == "complete" and backup["target"] == "s3", backup
        assert backup["size_bytes"] > 0

        await _sh(client, "app", 'psql "$DATABASE_URL" -c "DROP TABLE notes"')
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        assert await _sh(client, "app", NOTES_SUM) == before

        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "pg-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]["error"]
        await call(client, "link_database", {"database": "pg-copy", "service": "app", "env_var": "COPY_URL"})
        assert await _sh(client, "app", NOTES_SUM.replace("DATABASE_URL", "COPY_URL")) == before

        await call(client, "delete_backup", {"backup_id": backup["id"], "confirm": True})
        for name in ("pg", "pg-copy"):
            await call(client, "delete_database", {"database": name, "confirm": True})
        await call(client, "delete_service", {"service": "app", "confirm": True})
    # Every backup and restore job is gone, with its Variable.
    ours = (f"ah-{backup['id']}-", f"ah-{restored['last_restore']['id']}-", f"ah-{copy['last_restore']['id']}-")
    assert not [j["ID"] for j in nomad_get("jobs") if j["ID"].startswith(ours)]
    assert not [v["Path"] for v in nomad_get("vars", prefix="nomad/jobs/ah-") if v["Path"][11:].startswith(ours)]


REDIS_FILL = (
    'redis-cli -u "$REDIS_URL" --no-auth-warning EVAL "for i = 1, 300 do'
    " redis.call('SET', 'key:' .. i, redis.sha1hex('seed' .. i)) end\" 0 > /dev/null"
)
REDIS_SUM = (
    'redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "key:*" | sort > /tmp/keys'
    ' && { cat /tmp/keys; xargs redis-cli -u "$REDIS_URL" --no-auth-warning MGET < /tmp/keys; } | sha256sum'
)


async def test_redis_backs_up_on_its_node_and_restores_while_stopped(nomad_s3_host: AgentHost) -> None:
    host = nomad_s3_host
    key = host.tenant("nbk-redis")
    async with connect(host, key, "http") as client:
        await call(client, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 128})
        await call(
            client,
            "deploy_service",
            {"name": "worker", "image": host.settings.image_redis, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "cache", "service": "worker"})
        await _sh(client, "worker", REDIS_FILL)
        before = await _sh(client, "worker", REDIS_SUM)

        backup = await call(client, "create_backup", {"database": "cache"})
        assert backup["status"] == "complete", backup
        await _sh(client, "worker", 'redis-cli -u "$REDIS_URL" --no-auth-warning FLUSHALL')
        assert await _sh(client, "worker", REDIS_SUM) != before

        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        assert (await call(client, "get_database", {"database": "cache"}))["status"] == "running"
        assert await _sh(client, "worker", REDIS_SUM) == before

        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "cache-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]["error"]
        await call(client, "link_database", {"database": "cache-copy", "service": "worker", "env_var": "COPY"})
        assert await _sh(client, "worker", REDIS_SUM.replace("REDIS_URL", "COPY")) == before

        await call(client, "delete_service", {"service": "worker", "confirm": True})
        for name in ("cache", "cache-copy"):
            await call(client, "delete_database", {"database": name, "confirm": True})


async def test_volume_files_back_up_on_their_node_and_restore_with_owners(nomad_s3_host: AgentHost) -> None:
    host = nomad_s3_host
    key = host.tenant("nbk-vol")
    python = host.settings.image_python

    def files(name: str, volume: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": python,
            "command": ["sleep", "infinity"],
            "volumes": [{"name": volume, "path": "/app"}],
        }

    async with connect(host, key, "stdio") as client:
        await call(client, "deploy_service", files("files", "data"))
        await _sh(
            client,
            "files",
            "head -c 300000 /dev/urandom > /app/blob.bin && mkdir /app/sub && chmod 750 /app/sub"
            " && echo hello > /app/sub/note.txt && chmod 600 /app/sub/note.txt && ln -s /etc/passwd /app/link",
        )
        listing = "readlink /app/link && " + FILES_SUM
        before = await _sh(client, "files", listing)
        assert "10001:10001 750 sub" in before and "/etc/passwd" in before, before

        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete" and backup["kind"] == "volume", backup
        svc = await until_running(client, "files")
        assert svc["status"] == "running"

        await _sh(client, "files", "rm -rf /app/* && echo junk > /app/junk")
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        await until_running(client, "files")
        assert await _sh(client, "files", listing) == before
        assert "junk" not in await _sh(client, "files", "python3 -c 'import os; print(os.listdir(\"/app\"))'")

        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "data-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]["error"]
        await call(client, "deploy_service", files("reader", "data-copy"))
        assert await _sh(client, "reader", listing) == before
        await _sh(client, "reader", "touch /app/new-file")  # the new volume's root keeps the service's owner
        for name in ("files", "reader"):
            await call(client, "delete_service", {"service": name, "confirm": True})


async def until_running(client: Any, service: str) -> dict[str, Any]:

    got: dict[str, Any] = await until(
        client, "get_service", {"service": service}, lambda s: s["status"] == "running", 120
    )
    return got
