"""Managed Postgres and Redis through a real MCP client, used from inside real services, on real Docker."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import docker
import pytest

from orchestrator.databases.engines import postgres_accepts, redis_accepts

from .engine import NOTHING, engine_objects, engine_sh
from .harness import AgentHost, ToolFailed, call, connect, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def is_running(got: dict[str, Any]) -> bool:
    return bool(got["status"] == "running")


async def test_postgres_is_hardened_linked_and_used_from_a_service(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("db-pg")
    image = agenthost.settings.image_postgres
    progress: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with connect(agenthost, key, "stdio") as client:
        db = await call(client, "create_database", {"name": "pg", "engine": "postgres"}, progress_callback=on_progress)
        assert db["status"] == "running", db
        assert any("accept connections" in m for m in progress), progress
        assert db["url"] == "postgresql://pg:****@pg:5432/pg"
        assert db["external_url"].startswith("postgresql://pg:****@127.0.0.1:")

        attrs = docker_client.containers.get(f"ah-{db['id']}").attrs
        host = attrs["HostConfig"]
        assert host["Runtime"] == "runsc"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == 256 * 1024 * 1024 and host["PidsLimit"] == agenthost.settings.database_pids_limit
        assert attrs["Config"]["User"] == "postgres"
        mounts = [m for m in attrs["Mounts"] if m["Type"] == "volume"]
        assert [(m["Destination"], m["Name"]) for m in mounts] == [("/var/lib/postgresql/data", f"ah-{db['id']}-data")]

        conn = await call(client, "database_connection_string", {"database": "pg"})
        assert "****" in conn["url"] and conn["revealed"] is False and conn["env_var"] == "DATABASE_URL"
        secret = await call(client, "database_connection_string", {"database": "pg", "reveal": True})
        password = secret["url"].split(":")[2].split("@")[0]
        assert len(password) >= 24
        row = sqlite3.connect(agenthost.data_dir / "agenthost.db").execute(
            "SELECT password FROM databases WHERE id = ?", (db["id"],)
        )
        assert password.encode() not in row.fetchone()[0]  # encrypted at rest

        # Password auth is required: the published port refuses a wrong password.
        port = int(secret["external_url"].rsplit(":", 1)[1].split("/")[0])
        assert await postgres_accepts("127.0.0.1", port, "pg", "pg")

        svc = await call(
            client,
            "deploy_service",
            {
                "name": "app",
                "image": image,
                "command": ["sh", "-c", 'echo "connecting to $DATABASE_URL"; exec sleep infinity'],
            },
        )
        assert svc["status"] == "running"
        link = await call(client, "link_database", {"database": "pg", "service": "app"})
        assert link == {
            "database": "pg",
            "service": "app",
            "env_var": "DATABASE_URL",
            "linked": True,
            "service_status": "running",
        }
        svc = await call(client, "get_service", {"service": "app"})
        code, out = engine_sh(
            svc["id"],
            'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt'
            ' -c "CREATE TABLE notes (id int PRIMARY KEY, body text)"'
            " -c \"INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g\""
            ' -c "SELECT count(*) FROM notes"',
        )
        assert (code, out.strip()) == (0, "50"), out
        code, out = engine_sh(svc["id"], 'psql "${DATABASE_URL%@*}:wrong@pg:5432/pg" -c "select 1"')
        assert code != 0  # a wrong password is refused from inside the network too

        # The linked password never shows in the service's logs.
        logs = await call(client, "service_logs", {"service": "app"})
        assert "connecting to" in logs["output"] and password not in logs["output"]

        got = await call(client, "get_database", {"database": "pg"})
        assert got["linked_services"] == [{"service": "app", "env_var": "DATABASE_URL"}]

        # Deleting asks first, says what goes, and unlinks the service.
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_database", {"database": "pg"})
        assert err.value.code == "confirmation_required"
        assert "ALL its data" in err.value.message and "app (DATABASE_URL)" in err.value.message
        deleted = await call(client, "delete_database", {"database": "pg", "confirm": True})
        assert any("data volume" in r for r in deleted["removed"])
        svc = await until(client, "get_service", {"service": "app"}, is_running, 120)
        assert engine_sh(svc["id"], 'test -z "$DATABASE_URL"')[0] == 0
        await call(client, "delete_service", {"service": "app", "confirm": True})
    assert engine_objects(docker_client, agenthost.tenant_ids["db-pg"]) == NOTHING


async def test_redis_requires_its_password_and_a_linked_service_uses_it(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("db-redis")
    async with connect(agenthost, key, "http") as client:
        db = await call(client, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 128})
        assert db["status"] == "running" and db["url"] == "redis://cache:****@cache:6379/0"
        attrs = docker_client.containers.get(f"ah-{db['id']}").attrs
        assert attrs["HostConfig"]["Runtime"] == "runsc" and attrs["Config"]["User"] == "redis"
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True and attrs["HostConfig"]["CapDrop"] == ["ALL"]
        secret = await call(client, "database_connection_string", {"database": "cache", "reveal": True})
        password = secret["url"].split(":")[2].split("@")[0]
        port = int(secret["external_url"].rsplit(":", 1)[1].split("/")[0])
        assert await redis_accepts("127.0.0.1", port, "cache", password)
        assert not await redis_accepts("127.0.0.1", port, "cache", "not-the-password")

        await call(
            client,
            "deploy_service",
            {"name": "worker", "image": agenthost.settings.image_redis, "command": ["sleep", "infinity"]},
        )
        link = await call(client, "link_database", {"database": "cache", "service": "worker", "env_var": "CACHE"})
        assert link["env_var"] == "CACHE" and link["service_status"] == "running"
        svc = await call(client, "get_service", {"service": "worker"})
        code, out = engine_sh(svc["id"], 'redis-cli -u "$CACHE" --no-auth-warning SET greeting hi')
        assert (code, out.strip()) == (0, "OK"), out
        code, out = engine_sh(svc["id"], "redis-cli -h cache GET greeting")
        assert "NOAUTH" in out  # no password, no data

        unlinked = await call(client, "link_database", {"database": "cache", "service": "worker", "unlink": True})
        assert unlinked["linked"] is False
        svc = await call(client, "get_service", {"service": "worker"})
        assert engine_sh(svc["id"], 'test -z "$CACHE"')[0] == 0
        await call(client, "delete_service", {"service": "worker", "confirm": True})
        await call(client, "delete_database", {"database": "cache", "confirm": True})
    assert engine_objects(docker_client, agenthost.tenant_ids["db-redis"]) == NOTHING


async def test_another_tenant_cannot_reach_the_database(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    owner, other = agenthost.tenant("db-owner"), agenthost.tenant("db-other")
    async with connect(agenthost, owner, "stdio") as client:
        db = await call(client, "create_database", {"name": "private", "engine": "postgres"})
        secret = await call(client, "database_connection_string", {"database": "private", "reveal": True})
    networks = docker_client.containers.get(f"ah-{db['id']}").attrs["NetworkSettings"]["Networks"]
    addresses = [n["IPAddress"] for n in networks.values() if n["IPAddress"]]
    assert addresses
    async with connect(agenthost, other, "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "get_database", {"database": "private"})
        assert err.value.code == "not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "database_connection_string", {"database": db["id"], "reveal": True})
        assert err.value.code == "not_found"
        intruder = await call(
            client,
            "deploy_service",
            {"name": "intruder", "image": agenthost.settings.image_postgres, "command": ["sleep", "infinity"]},
        )
        assert intruder["status"] == "running"
        # Even with the full connection string, neither the name nor any address of the database answers.
        code, out = engine_sh(intruder["id"], 'psql "$URL" -c "select 1"', URL=secret["url"])
        assert code != 0 and ("could not translate host name" in out or "timeout" in out), out
        for address in addresses:
            url = secret["url"].replace("@private:", f"@{address}:") + "?connect_timeout=3"
            code, out = engine_sh(intruder["id"], 'psql "$URL" -c "select 1"', URL=url)
            assert code != 0, f"tenant db-other reached {address}: {out}"
        await call(client, "delete_service", {"service": "intruder", "confirm": True})
    async with connect(agenthost, owner, "stdio") as client:
        await call(client, "delete_database", {"database": "private", "confirm": True})


async def test_data_survives_engine_stop_container_loss_and_control_plane_restart(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("db-durable")
    async with connect(agenthost, key, "stdio") as client:
        db = await call(client, "create_database", {"name": "keep", "engine": "postgres"})
        url = (await call(client, "database_connection_string", {"database": "keep", "reveal": True}))["url"]
    pw = url.split(":")[2].split("@")[0]
    psql = "psql -h 127.0.0.1 -U keep -d keep -qAt -v ON_ERROR_STOP=1 -c"
    code, out = engine_sh(db["id"], f"{psql} \"CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')\"", PGPASSWORD=pw)
    assert code == 0, out

    # The engine stops it (as on a host reboot); a new control-plane process starts it again.
    docker_client.containers.get(f"ah-{db['id']}").stop()
    async with connect(agenthost, key, "stdio") as client:
        await until(client, "get_database", {"database": "keep"}, is_running, 120)
    assert engine_sh(db["id"], f'{psql} "SELECT v FROM t"', PGPASSWORD=pw)[1].strip() == "kept"

    # The container is lost entirely: it is recreated from the data volume.
    docker_client.containers.get(f"ah-{db['id']}").remove(force=True)
    async with connect(agenthost, key, "stdio") as client:
        await until(client, "get_database", {"database": "keep"}, is_running, 120)
        assert engine_sh(db["id"], f'{psql} "SELECT v FROM t"', PGPASSWORD=pw)[1].strip() == "kept"
        await call(client, "delete_database", {"database": "keep", "confirm": True})


async def test_bad_input_is_refused_and_leaves_nothing_behind(
    agenthost: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    agenthost.env["AGENTHOST_QUOTAS"] = json.dumps({"max_databases": 1})
    try:
        key = agenthost.tenant("db-bad")
    finally:
        del agenthost.env["AGENTHOST_QUOTAS"]
    tenant_id = agenthost.tenant_ids["db-bad"]
    async with connect(agenthost, key, "http") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_database", {"name": "x", "engine": "mysql"})
        assert err.value.code == "invalid_input" and "postgres" in err.value.message
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_database", {"name": "big", "engine": "redis", "memory_mb": 8000})
        assert err.value.code == "quota_exceeded"
        assert engine_objects(docker_client, tenant_id) == NOTHING

        await call(client, "create_database", {"name": "only", "engine": "redis", "memory_mb": 64})
        before = engine_objects(docker_client, tenant_id)
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_database", {"name": "only", "engine": "postgres"})
        assert err.value.code == "conflict"
        with pytest.raises(ToolFailed) as err:  # one name on the private network, one workload
            await call(client, "deploy_service", {"name": "only", "image": hello_image, "port": 8000})
        assert err.value.code == "conflict" and "database" in err.value.message
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_database", {"name": "second", "engine": "redis", "memory_mb": 64})
        assert err.value.code == "quota_exceeded" and "1 of 1" in err.value.message
        with pytest.raises(ToolFailed) as err:
            await call(client, "link_database", {"database": "only", "service": "nope"})
        assert err.value.code == "not_found"
        assert engine_objects(docker_client, tenant_id) == before
        listed = await call(client, "list_databases")
        assert [d["name"] for d in listed["databases"]] == ["only"]
        who = await call(client, "whoami")
        assert who["usage"]["databases"] == 1
        await call(client, "delete_database", {"database": "only", "confirm": True})
    assert engine_objects(docker_client, tenant_id) == NOTHING
