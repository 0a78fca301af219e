"""Backups that really restore: Postgres rows, Redis keys and volume files, locally and on S3 (moto on 127.0.0.1),
through a real MCP client; bad input, an unreachable target and a control plane killed mid-backup."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest

from .engine import NOTHING, engine_objects, engine_sh
from .harness import AgentHost, ToolFailed, call, connect, free_port, until, wait_for
from .s3 import S3_BUCKET, backup_env, moto_s3, s3_client

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NOTES_SUM = "psql \"$DATABASE_URL\" -qAt -c \"SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM notes\""
REDIS_SUM = (
    'redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "key:*" | sort > /tmp/keys'
    ' && { cat /tmp/keys; xargs redis-cli -u "$REDIS_URL" --no-auth-warning MGET < /tmp/keys; } | sha256sum'
)
# gVisor here has no statx (coreutils stat fails), so owners and modes come from Python's os.stat.
FILES_SUM = (
    "cd /app && find . -type f | sort | xargs sha256sum && python3 -c \"import os; [print(f'{s.st_uid}:{s.st_gid}"
    " {s.st_mode & 0o7777:o} {p}') for p in ('blob.bin', 'sub', 'sub/note.txt') for s in [os.stat(p)]]\""
)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


def _host(tmp_path_factory: pytest.TempPathFactory, name: str, **env: str) -> AgentHost:
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp(name)), env=env)
    host.init()
    return host


@pytest.fixture(scope="module")
def s3_host(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[AgentHost]:
    host = _host(tmp_path_factory, "agenthost-s3", **backup_env(s3_endpoint))
    yield host
    host.stop()
    host.cleanup_engine()


def secret_url(conn: dict[str, Any]) -> tuple[str, str]:
    return conn["url"], conn["url"].split(":")[2].split("@")[0]


async def test_postgres_rows_back_up_drop_and_restore_identically(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("bk-pg")
    async with connect(agenthost, key, "stdio") as client:
        await call(client, "create_database", {"name": "pg", "engine": "postgres"})
        svc = await call(
            client,
            "deploy_service",
            {"name": "app", "image": agenthost.settings.image_postgres, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "pg", "service": "app"})
        svc = await call(client, "get_service", {"service": "app"})
        code, out = engine_sh(
            svc["id"],
            'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q'
            ' -c "CREATE TABLE notes (id int PRIMARY KEY, body text)"'
            ' -c "INSERT INTO notes SELECT g, md5(random()::text) FROM generate_series(1, 2000) g"',
        )
        assert code == 0, out
        code, before = engine_sh(svc["id"], NOTES_SUM)
        assert code == 0 and len(before.strip()) == 32, before

        backup = await call(client, "create_backup", {"database": "pg"})
        assert backup["status"] == "complete", backup
        assert backup["kind"] == "database" and backup["source"] == "pg" and backup["target"] == "local"
        assert backup["size_bytes"] > 0
        repo = agenthost.data_dir / "restic" / agenthost.tenant_ids["bk-pg"]
        assert (repo / "config").is_file()

        assert engine_sh(svc["id"], 'psql "$DATABASE_URL" -c "DROP TABLE notes"')[0] == 0
        assert engine_sh(svc["id"], NOTES_SUM)[0] != 0

        with pytest.raises(ToolFailed) as err:
            await call(client, "restore_backup", {"backup_id": backup["id"]})
        assert err.value.code == "confirmation_required" and "REPLACED" in err.value.message
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        assert restored["last_restore"]["into"] == "pg" and restored["last_restore"]["created_new"] is False
        assert engine_sh(svc["id"], NOTES_SUM) == (0, before)

        # Into a new database: same rows, and the original is untouched.
        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "pg-copy"})
        assert copy["last_restore"]["status"] == "complete" and copy["last_restore"]["created_new"] is True, copy[
            "last_restore"
        ]["error"]
        await call(client, "link_database", {"database": "pg-copy", "service": "app", "env_var": "COPY_URL"})
        svc = await call(client, "get_service", {"service": "app"})
        copy_sum = engine_sh(svc["id"], NOTES_SUM.replace("DATABASE_URL", "COPY_URL"))
        assert copy_sum == (0, before)
        listed = await call(client, "list_backups", {"database": "pg"})
        assert [b["id"] for b in listed["backups"]] == [backup["id"]]

        deleted = await call(client, "delete_backup", {"backup_id": backup["id"], "confirm": True})
        assert any("snapshot" in r for r in deleted["removed"])
        assert (await call(client, "list_backups"))["backups"] == []
        for name in ("pg", "pg-copy"):
            await call(client, "delete_database", {"database": name, "confirm": True})
        await call(client, "delete_service", {"service": "app", "confirm": True})
    assert not list((agenthost.data_dir / "backup-staging").glob("*"))


async def test_redis_keys_back_up_flush_and_restore_identically(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("bk-redis")
    async with connect(agenthost, key, "http") as client:
        db = await call(client, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 128})
        await call(
            client,
            "deploy_service",
            {"name": "worker", "image": agenthost.settings.image_redis, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "cache", "service": "worker"})
        svc = await call(client, "get_service", {"service": "worker"})
        code, out = engine_sh(
            svc["id"],
            'redis-cli -u "$REDIS_URL" --no-auth-warning EVAL "for i = 1, 300 do'
            " redis.call('SET', 'key:' .. i, redis.sha1hex(ARGV[1] .. i)) end\" 0 \"$SEED\" > /dev/null"
            ' && redis-cli -u "$REDIS_URL" --no-auth-warning DBSIZE',
            SEED=os.urandom(8).hex(),
        )
        assert (code, out.strip()) == (0, "300"), out
        code, before = engine_sh(svc["id"], REDIS_SUM)
        assert code == 0, before

        backup = await call(client, "create_backup", {"database": "cache"})
        assert backup["status"] == "complete" and backup["source"] == "cache", backup

        code, out = engine_sh(
            svc["id"],
            'redis-cli -u "$REDIS_URL" --no-auth-warning FLUSHALL'
            ' && redis-cli -u "$REDIS_URL" --no-auth-warning SET after:1 x',
        )
        assert code == 0, out
        assert engine_sh(svc["id"], REDIS_SUM)[1] != before

        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        assert (await call(client, "get_database", {"database": "cache"}))["status"] == "running"
        assert engine_sh(svc["id"], REDIS_SUM) == (0, before)
        assert engine_sh(svc["id"], 'redis-cli -u "$REDIS_URL" --no-auth-warning EXISTS after:1')[1].strip() == "0"

        # Restored data is Redis's own again: it survives a restart from its append-only file.
        docker_client.containers.get(f"ah-{db['id']}").restart()
        code, out = (1, "")
        with anyio.fail_after(60):
            while code != 0 or "300" not in out:
                await anyio.sleep(0.5)
                code, out = engine_sh(svc["id"], 'redis-cli -u "$REDIS_URL" --no-auth-warning DBSIZE')
        assert engine_sh(svc["id"], REDIS_SUM) == (0, before)

        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "cache-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]["error"]
        await call(client, "link_database", {"database": "cache-copy", "service": "worker", "env_var": "COPY"})
        svc = await call(client, "get_service", {"service": "worker"})
        assert engine_sh(svc["id"], REDIS_SUM.replace("REDIS_URL", "COPY")) == (0, before)

        await call(client, "delete_service", {"service": "worker", "confirm": True})
        for name in ("cache", "cache-copy"):
            await call(client, "delete_database", {"database": name, "confirm": True})


async def test_volume_files_back_up_and_restore_with_owner_and_mode(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("bk-vol")
    python = agenthost.settings.image_python
    async with connect(agenthost, key, "stdio") as client:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "files",
                "image": python,
                "command": ["sleep", "infinity"],
                "volumes": [{"name": "data", "path": "/app"}],
            },
        )
        code, out = engine_sh(
            svc["id"],
            "head -c 3000000 /dev/urandom > /app/blob.bin && mkdir /app/sub && chmod 750 /app/sub"
            " && echo hello > /app/sub/note.txt && chmod 600 /app/sub/note.txt",
        )
        assert code == 0, out
        code, before = engine_sh(svc["id"], FILES_SUM)
        assert code == 0 and "10001:10001 750 sub" in before, before
        started = docker_client.containers.get(f"ah-{svc['id']}").attrs["State"]["StartedAt"]

        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete" and backup["kind"] == "volume", backup
        # The service was stopped for a consistent copy, and runs again.
        svc = await call(client, "get_service", {"service": "files"})
        assert svc["status"] == "running"
        assert docker_client.containers.get(f"ah-{svc['id']}").attrs["State"]["StartedAt"] != started

        assert engine_sh(svc["id"], "rm -rf /app/* && echo junk > /app/junk")[0] == 0
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        svc = await until(client, "get_service", {"service": "files"}, lambda s: s["status"] == "running", 120)
        assert engine_sh(svc["id"], FILES_SUM) == (0, before)
        assert engine_sh(svc["id"], "test -e /app/junk")[0] != 0

        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "data-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]["error"]
        other = await call(
            client,
            "deploy_service",
            {
                "name": "reader",
                "image": python,
                "command": ["sleep", "infinity"],
                "volumes": [{"name": "data-copy", "path": "/app"}],
            },
        )
        assert engine_sh(other["id"], FILES_SUM) == (0, before)
        assert engine_sh(other["id"], "touch /app/new-file")[0] == 0  # the root keeps its owner
        for name in ("files", "reader"):
            await call(client, "delete_service", {"service": name, "confirm": True})
    assert engine_objects(docker_client, agenthost.tenant_ids["bk-vol"]) == NOTHING


async def test_backup_to_s3_and_restore_from_it(
    s3_host: AgentHost, s3_endpoint: str, docker_client: docker.DockerClient
) -> None:
    key = s3_host.tenant("bk-s3")
    async with connect(s3_host, key, "stdio") as client:
        db = await call(client, "create_database", {"name": "pg", "engine": "postgres"})
        _, password = secret_url(await call(client, "database_connection_string", {"database": "pg", "reveal": True}))
        psql = "psql -h 127.0.0.1 -U pg -d pg -qAt -v ON_ERROR_STOP=1"
        code, out = engine_sh(
            db["id"],
            f'{psql} -c "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 500) g"',
            PGPASSWORD=password,
        )
        assert code == 0, out
        checksum = f"{psql} -c \"SELECT md5(string_agg(id || v, ',' ORDER BY id)) FROM t\""
        before = engine_sh(db["id"], checksum, PGPASSWORD=password)
        assert before[0] == 0

        backup = await call(client, "create_backup", {"database": "pg"})
        assert backup["status"] == "complete" and backup["target"] == "s3", backup
        s3 = s3_client(s3_endpoint)
        tenant_id = s3_host.tenant_ids["bk-s3"]
        objects = [o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=f"{tenant_id}/")["Contents"]]
        assert f"{tenant_id}/config" in objects and any("/snapshots/" in o for o in objects)
        assert not (s3_host.data_dir / "restic" / tenant_id).exists()

        assert engine_sh(db["id"], f'{psql} -c "DELETE FROM t WHERE id > 10"', PGPASSWORD=password)[0] == 0
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        assert engine_sh(db["id"], checksum, PGPASSWORD=password) == before

        # A local backup on the same platform goes to the local repository instead.
        local = await call(client, "create_backup", {"database": "pg", "target": "local"})
        assert local["status"] == "complete" and local["target"] == "local"
        assert (s3_host.data_dir / "restic" / tenant_id / "config").is_file()
        await call(client, "delete_database", {"database": "pg", "confirm": True})


async def test_bad_input_and_another_tenants_backup_are_refused(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    owner, other = agenthost.tenant("bk-owner"), agenthost.tenant("bk-other")
    async with connect(agenthost, owner, "stdio") as client:
        await call(client, "create_database", {"name": "kv", "engine": "redis", "memory_mb": 64})
        backup = await call(client, "create_backup", {"database": "kv"})
        assert backup["status"] == "complete"
        for args, code in (
            ({}, "invalid_input"),
            ({"database": "kv", "volume": "data"}, "invalid_input"),
            ({"database": "nope"}, "not_found"),
            ({"volume": "nope"}, "not_found"),
            ({"database": "kv", "target": "s3"}, "invalid_input"),
        ):
            with pytest.raises(ToolFailed) as err:
                await call(client, "create_backup", args)
            assert err.value.code == code, (args, err.value)
        with pytest.raises(ToolFailed) as err:
            await call(client, "restore_backup", {"backup_id": backup["id"], "name": "kv"})
        assert err.value.code == "conflict"
    async with connect(agenthost, other, "http") as client:
        for tool, args in (
            ("restore_backup", {"backup_id": backup["id"], "confirm": True}),
            ("restore_backup", {"backup_id": backup["id"], "name": "stolen"}),
            ("delete_backup", {"backup_id": backup["id"], "confirm": True}),
        ):
            with pytest.raises(ToolFailed) as err:
                await call(client, tool, args)
            assert err.value.code == "not_found", (tool, err.value)
        assert (await call(client, "list_backups"))["backups"] == []
        assert (await call(client, "list_databases"))["databases"] == []
    async with connect(agenthost, owner, "stdio") as client:
        listed = await call(client, "list_backups", {"database": "kv"})
        assert [(b["id"], b["status"]) for b in listed["backups"]] == [(backup["id"], "complete")]
        await call(client, "delete_database", {"database": "kv", "confirm": True})
        await call(client, "delete_backup", {"backup_id": backup["id"], "confirm": True})


async def test_unreachable_target_is_a_clear_error_and_nothing_is_half_made(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> None:
    dead = free_port()  # nothing listens there
    host = _host(tmp_path_factory, "agenthost-dead-s3", **backup_env(f"http://127.0.0.1:{dead}"))
    try:
        key = host.tenant("bk-dead")
        async with connect(host, key, "stdio") as client:
            svc = await call(
                client,
                "deploy_service",
                {
                    "name": "files",
                    "image": host.settings.image_python,
                    "command": ["sleep", "infinity"],
                    "volumes": [{"name": "data", "path": "/app"}],
                },
            )
            started = docker_client.containers.get(f"ah-{svc['id']}").attrs["State"]["StartedAt"]
            with pytest.raises(ToolFailed) as err:
                await call(client, "create_backup", {"volume": "data"})
            assert err.value.code == "backup_target_unavailable", err.value
            assert f"127.0.0.1:{dead}" in err.value.message
            assert (await call(client, "list_backups"))["backups"] == []
            # The service was never stopped for it.
            assert docker_client.containers.get(f"ah-{svc['id']}").attrs["State"]["StartedAt"] == started
            assert not list((host.data_dir / "backup-staging").glob("*"))
            await call(client, "delete_service", {"service": "files", "confirm": True})
    finally:
        host.stop()
        host.cleanup_engine()


async def _backup(client: Any, backup_id: str) -> dict[str, Any]:
    found = [b for b in (await call(client, "list_backups"))["backups"] if b["id"] == backup_id]
    assert len(found) == 1, found
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _restic_pids(repo: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"restic") and str(repo).encode() in cmdline:
                found.append(int(proc.name))
    return found


async def test_control_plane_killed_mid_backup_ends_failed_or_complete_and_resumes_services(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> None:
    host = _host(tmp_path_factory, "agenthost-crash")
    try:
        key = host.tenant("bk-crash")
        tenant_id = host.tenant_ids["bk-crash"]
        repo = host.data_dir / "restic" / tenant_id
        async with connect(host, key, "http") as client:
            svc = await call(
                client,
                "deploy_service",
                {
                    "name": "bulky",
                    "image": host.settings.image_python,
                    "command": ["sleep", "infinity"],
                    "volumes": [{"name": "big", "path": "/app"}],
                },
            )
            # Enough data that restic is still at work when the control plane dies.
            mount = Path(docker_client.volumes.get(f"ah-{tenant_id}-big").attrs["Mountpoint"])
            digests = {}
            for i in range(6):
                chunk = os.urandom(100 * 1024 * 1024)
                (mount / f"chunk-{i}").write_bytes(chunk)
                digests[f"chunk-{i}"] = hashlib.sha256(chunk).hexdigest()
            backup = await call(client, "create_backup", {"volume": "big", "wait": False})
            assert backup["status"] == "running"
            with anyio.fail_after(120):
                while not _restic_pids(repo):
                    await anyio.sleep(0.05)
        assert docker_client.containers.get(f"ah-{svc['id']}").status == "exited"  # paused for the copy
        host.kill_server()
        # restic dies with its control plane instead of finishing a snapshot nobody records.
        wait_for(lambda: not _restic_pids(repo), 15, what="restic to exit")

        async with connect(host, key, "http") as client:  # a new control-plane process
            with anyio.fail_after(120):
                while (got := await _backup(client, backup["id"]))["status"] == "running":
                    await anyio.sleep(0.5)
            if got["status"] == "failed":
                assert "interrupted" in got["error"], got
            else:
                # restic wrote its snapshot before it died: the recovery recorded it, and it holds every byte.
                assert got["status"] == "complete", got
                copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "big-copy"})
                assert copy["last_restore"]["status"] == "complete", copy["last_restore"]
                restored = Path(docker_client.volumes.get(f"ah-{tenant_id}-big-copy").attrs["Mountpoint"])
                assert {f: _sha256(restored / f) for f in digests} == digests
            svc = await until(client, "get_service", {"service": "bulky"}, lambda s: s["status"] == "running", 120)
            assert not list((host.data_dir / "backup-staging").glob("*"))
            again = await call(client, "create_backup", {"volume": "big"})
            assert again["status"] == "complete", again  # the repository is not left locked
            await call(client, "delete_service", {"service": "bulky", "confirm": True})
    finally:
        host.stop()
        host.cleanup_engine()
