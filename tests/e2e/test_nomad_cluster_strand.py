"""A drain moves a database's data with its tenant, through the tenant's S3 repository: the row a service wrote into
its Postgres before the drain is read on the other node after it. A database stranded on a lost node comes back on
the other one from its latest backup: the Nomad agent of its node is killed, the tenant's service moves,
get_database names the lost node, and restore_backup over the database releases its volume, runs it afresh on the
tenant's node and loads the snapshot there (S3 on moto, reachable from the nodes as in test_nomad_cluster_backups).
When the lost node is back, the old copy it kept is removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest

from orchestrator.settings import Settings

from .harness import AgentHost, call, connect
from .nomad_cluster import (
    BRIDGE_HOST,
    Cluster,
    cluster_get,
    cluster_host,
    kill_client_agent,
    node_ids,
    push_images,
    start_cluster,
    until_value,
)
from .s3 import backup_env, moto_s3

# Alone (infra/test.sh), the whole module in its order: it drains a node or kills its agent, and waits on
# Nomad's heartbeats, drain deadlines and allocation stops, which beside the other e2e run once took longer
# than the platform waits (an allocation still running 60 s after its job was removed).
pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.alone]

_CLI = 'redis-cli -u "$REDIS_URL" --no-auth-warning '
_PSQL = 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt '
_WRITE = " -c \"INSERT INTO entries VALUES ('written-before-the-drain')\""


@pytest.fixture(scope="module")
def strand_host(nomad_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    """agenthost on the cluster with backups to moto S3, redis and postgres in the cluster registry, a reconciler
    pass every 2 s."""
    redis, postgres = Settings().image_redis, Settings().image_postgres
    refs = push_images([redis, postgres])
    data_dir = Path(tmp_path_factory.mktemp("agenthost-strand"))
    env = {
        "AGENTHOST_IMAGE_REDIS": refs[redis],
        "AGENTHOST_IMAGE_POSTGRES": refs[postgres],
        "AGENTHOST_RECONCILE_INTERVAL_S": "2",
    }
    with (
        moto_s3(BRIDGE_HOST, make_bucket=True) as endpoint,
        cluster_host(nomad_cluster, data_dir, **env, **backup_env(endpoint)) as host,
    ):
        yield host


def _running_on(cluster: Cluster, workload_id: str) -> set[str]:
    """Names of the nodes where the workload has a running allocation."""
    return {
        a["NodeName"]
        for a in cluster_get(cluster, f"job/ah-{workload_id}/allocations")
        if a["ClientStatus"] == "running"
    }


async def _sh(client: Any, service: str, script: str) -> list[str]:
    """The script's output lines (between the markers that say it is the workload's)."""
    out = await call(client, "exec", {"service": service, "command": script, "timeout_s": 120})
    assert out["exit_code"] == 0, out
    return [line for line in str(out["stdout"]).splitlines() if line.strip() and not line.startswith("<<<")]


async def test_a_drain_moves_a_database_s_data_with_its_tenant_to_the_other_node(
    strand_host: AgentHost, nomad_cluster: Cluster
) -> None:
    host = strand_host
    async with (
        connect(host, host.admin_key, "http") as admin,
        connect(host, host.tenant("drained"), "http") as client,
    ):
        db = await call(client, "create_database", {"name": "ledger", "engine": "postgres"})
        worker = {"name": "clerk", "image": host.settings.image_postgres, "command": ["sleep", "infinity"]}
        svc = await call(client, "deploy_service", worker | {"memory_mb": 64})
        await call(client, "link_database", {"database": "ledger", "service": "clerk"})
        assert await _sh(client, "clerk", _PSQL + '-c "CREATE TABLE entries (body text)"' + _WRITE) == []
        (node,) = _running_on(nomad_cluster, db["id"])
        (other,) = set(nomad_cluster.nodes) - {node}
        ids = node_ids(nomad_cluster)
        volume = f"ah-{db['id']}-data"
        try:
            report = await call(admin, "drain_node", {"node": ids[node], "deadline_s": 10})
            tenant = host.tenant_ids["drained"]
            assert report["moved_to"][tenant] == ids[other], report
            assert [(w["id"], w["error"]) for w in report["data_moved"]] == [(db["id"], None)], report
            assert not [w for w in report["stranded"] if w["tenant"] == tenant], report
            ledger = await call(client, "get_database", {"database": "ledger"})
            assert ledger["status"] == "running", ledger
            assert _running_on(nomad_cluster, db["id"]) == {other}
            assert volume in docker_volumes(nomad_cluster, other)

            async def clerk_moved() -> bool | None:
                got = await call(client, "get_service", {"service": "clerk"})
                return True if got["status"] == "running" and _running_on(nomad_cluster, svc["id"]) == {other} else None

            await until_value(clerk_moved, 120, "the service to run on the other node")
            assert await _sh(client, "clerk", _PSQL + '-c "SELECT body FROM entries"') == ["written-before-the-drain"]
            backups = await call(client, "list_backups", {})
            assert backups["backups"] == [], backups  # the snapshot that carried the data is no backup of theirs
        finally:
            await call(admin, "set_node_eligibility", {"node": ids[node], "eligible": True})

        async def copy_removed() -> bool | None:
            return True if volume not in await anyio.to_thread.run_sync(docker_volumes, nomad_cluster, node) else None

        await until_value(copy_removed, 120, "the copy on the drained node to be removed once it takes work again")
        assert await _sh(client, "clerk", _PSQL + '-c "SELECT body FROM entries"') == ["written-before-the-drain"]
        await call(client, "delete_service", {"service": "clerk", "confirm": True})
        await call(client, "delete_database", {"database": "ledger", "confirm": True})


async def test_a_database_stranded_on_a_lost_node_is_restored_over_itself_on_the_other(
    strand_host: AgentHost, nomad_cluster: Cluster
) -> None:
    host = strand_host
    async with (
        connect(host, host.admin_key, "http") as admin,
        connect(host, host.tenant("strand"), "http") as client,
    ):
        db = await call(client, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 64})
        worker = {"name": "worker", "image": host.settings.image_redis, "command": ["sleep", "infinity"]}
        svc = await call(client, "deploy_service", worker | {"memory_mb": 64})
        assert db["status"] == "running" and svc["status"] == "running", (db, svc)
        await call(client, "link_database", {"database": "cache", "service": "worker"})
        assert await _sh(client, "worker", _CLI + "SET kept before-the-loss") == ["OK"]
        backup = await call(client, "create_backup", {"database": "cache"})
        assert backup["status"] == "complete", backup

        (node,) = _running_on(nomad_cluster, db["id"])
        (other,) = set(nomad_cluster.nodes) - {node}
        ids = node_ids(nomad_cluster)
        volume = f"ah-{db['id']}-data"
        assert volume in docker_volumes(nomad_cluster, node)
        kill_client_agent(node)
        try:

            async def moved() -> bool | None:
                got = await call(client, "get_service", {"service": "worker"})
                return True if got["status"] == "running" and _running_on(nomad_cluster, svc["id"]) == {other} else None

            await until_value(moved, 180, "the service to run on the other node")

            async def stranded() -> dict[str, Any] | None:
                got = await call(client, "get_database", {"database": "cache"})
                return got if got["status"] == "failed" else None

            cache = await until_value(stranded, 120, "the database to say its data is on the lost node")
            assert f"{ids[node]}, which is down" in cache["last_error"], cache

            restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
            assert restored["last_restore"]["status"] == "complete", restored["last_restore"]
            assert (await call(client, "get_database", {"database": "cache"}))["status"] == "running"
            assert _running_on(nomad_cluster, db["id"]) == {other}
            assert await _sh(client, "worker", _CLI + "GET kept") == ["before-the-loss"]  # by name, on the other node
        finally:
            await anyio.to_thread.run_sync(start_cluster)  # restarts the killed client, waits for two ready
        nodes = (await call(admin, "list_nodes"))["nodes"]
        assert len(nodes) == 2 and all(n["eligible"] and not n["draining"] for n in nodes), nodes
        assert (await call(client, "get_database", {"database": "cache"}))["status"] == "running"

        async def copy_removed() -> bool | None:
            return True if volume not in await anyio.to_thread.run_sync(docker_volumes, nomad_cluster, node) else None

        # The old copy the lost node kept (no record points to it) goes once the node is back; the volume the
        # database now lives on stays, with its data.
        await until_value(copy_removed, 180, "the copy on the node that came back to be removed")
        assert volume in docker_volumes(nomad_cluster, other)
        assert await _sh(client, "worker", _CLI + "GET kept") == ["before-the-loss"]
        await call(client, "delete_service", {"service": "worker", "confirm": True})
        await call(client, "delete_database", {"database": "cache", "confirm": True})
    assert volume not in docker_volumes(nomad_cluster, other) | docker_volumes(nomad_cluster, node)


def docker_volumes(cluster: Cluster, node: str) -> set[str]:
    engine = docker.DockerClient(base_url=f"unix://{cluster.nodes[node][1]}")
    try:
        return {v.name for v in engine.volumes.list()}
    finally:
        engine.close()
