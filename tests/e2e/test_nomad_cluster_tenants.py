"""Tenants on the three-node Nomad cluster (infra/nomad-testcluster.sh): each tenant's services and databases
share one node and its tenant bridge, other tenants reach none of them wherever they run, a drain moves a
tenant's stateless services to the other node, and a lost node's services come back on the other one while
its databases say where their data is. Driven through MCP as an agent and an operator would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import docker
import pytest

from orchestrator.settings import Settings

from .conformance import answers
from .harness import EGRESS_PROBE, AgentHost, call, connect, probe_results
from .nomad_cluster import (
    GREETING_APP,
    Cluster,
    cluster_get,
    cluster_host,
    greeting_service,
    kill_client_agent,
    node_ids,
    push_images,
    start_cluster,
    until_value,
)

# Alone (infra/test.sh), the whole module in its order: it drains a node or kills its agent, and waits on
# Nomad's heartbeats, drain deadlines and allocation stops, which beside the other e2e run once took longer
# than the platform waits (an allocation still running 60 s after its job was removed).
pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.alone]


@pytest.fixture(scope="module")
def tenant_host(nomad_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    """agenthost on the cluster with redis in the cluster registry and a reconciler pass every 2 s."""
    redis = Settings().image_redis
    refs = push_images([redis])
    data_dir = Path(tmp_path_factory.mktemp("agenthost-tenants"))
    env = {"AGENTHOST_IMAGE_REDIS": refs[redis], "AGENTHOST_RECONCILE_INTERVAL_S": "2"}
    with cluster_host(nomad_cluster, data_dir, **env) as host:
        yield host


@pytest.fixture
async def admin(tenant_host: AgentHost) -> AsyncIterator[Any]:
    async with connect(tenant_host, tenant_host.admin_key, "http") as client:
        yield client


def _running_alloc(cluster: Cluster, workload_id: str) -> dict[str, Any]:
    allocs = cluster_get(cluster, f"job/ah-{workload_id}/allocations")
    # An allocation an update replaced (link_database redeploys) may run on for a moment, told to stop.
    (alloc,) = [a for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"]
    return dict(alloc)


def _targets(cluster: Cluster, workload_id: str, label: str) -> dict[str, str]:
    """Every way to a workload: its address on its tenant bridge and its published ports on its node."""
    alloc = cluster_get(cluster, f"allocation/{_running_alloc(cluster, workload_id)['ID']}")
    _, socket, _ = cluster.nodes[alloc["NodeName"]]
    engine = docker.DockerClient(base_url=f"unix://{socket}")
    try:
        networks = engine.containers.get(f"main-{alloc['ID']}").attrs["NetworkSettings"]["Networks"]
    finally:
        engine.close()
    ports = alloc["AllocatedResources"]["Shared"]["Ports"]
    out = {f"{label}-published-{p['To']}": f"{p['HostIP']}:{p['Value']}" for p in ports}
    for net in networks.values():
        out |= {f"{label}-bridge-{p['To']}": f"{net['IPAddress']}:{p['To']}" for p in ports}
    return out


async def _probe(client: Any, service: str, targets: dict[str, str]) -> dict[str, str]:
    command = ["python3", "-c", EGRESS_PROBE, *(f"{k}={v}" for k, v in targets.items())]
    run = await call(client, "exec", {"service": service, "command": command, "timeout_s": 120})
    results = probe_results(run["stdout"])
    assert set(results) == set(targets), run
    return results


async def _deploy_on(admin: Any, client: Any, cluster: Cluster, avoid: str, name: str) -> dict[str, Any]:
    """A new tenant's first service, placed away from node ``avoid`` (made ineligible meanwhile)."""
    node_id = node_ids(cluster)[avoid]
    # On port 8001: the nodes number their bridges alike, so on the other node the victim's bridge address
    # may well be the prober's own, which must not answer on the victim's port and pass for it.
    args = greeting_service(cluster, name) | {
        "port": 8001,
        "command": ["python3", "-c", GREETING_APP.replace("8000", "8001")],
    }
    await call(admin, "set_node_eligibility", {"node": node_id, "eligible": False})
    try:
        svc = await call(client, "deploy_service", args)
    finally:
        await call(admin, "set_node_eligibility", {"node": node_id, "eligible": True})
    assert svc["status"] == "running", svc
    return dict(svc)


async def test_other_tenants_reach_neither_a_service_nor_its_database_on_any_node(
    tenant_host: AgentHost, nomad_cluster: Cluster, admin: Any
) -> None:
    """The attack: a tenant on the same node and a tenant on the other node try the victim's service and
    database by name, by their addresses on the victim's bridge, and by their published ports on the node.
    They reach nothing; the victim's own service reaches its database by name on their shared node."""
    host = tenant_host
    async with (
        connect(host, host.tenant("pin-victim"), "http") as victim,
        connect(host, host.tenant("pin-near"), "http") as near,
        connect(host, host.tenant("pin-far"), "http") as far,
    ):
        web = await call(victim, "deploy_service", greeting_service(nomad_cluster, "web"))
        db = await call(victim, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 64})
        assert web["status"] == "running" and db["status"] == "running", (web, db)
        await call(victim, "link_database", {"database": "cache", "service": "web"})
        node = _running_alloc(nomad_cluster, web["id"])["NodeName"]
        assert _running_alloc(nomad_cluster, db["id"])["NodeName"] == node  # one tenant, one node
        (other,) = set(nomad_cluster.nodes) - {node}
        await _deploy_on(admin, near, nomad_cluster, other, "prober")
        await _deploy_on(admin, far, nomad_cluster, node, "prober")
        probers = {"near": near, "far": far}
        placed = {
            k: _running_alloc(nomad_cluster, (await call(c, "get_service", {"service": "prober"}))["id"])
            for k, c in probers.items()
        }
        assert {k: a["NodeName"] for k, a in placed.items()} == {"near": node, "far": other}

        targets = {"web-name": "web:8000", "cache-name": "cache:6379"}
        targets |= _targets(nomad_cluster, web["id"], "web") | _targets(nomad_cluster, db["id"], "cache")
        for who, client in probers.items():
            results = await _probe(client, "prober", targets)
            assert all(r.startswith("blocked") for r in results.values()), (who, results)
        own = await _probe(victim, "web", {"cache-name": "cache:6379", "self-name": "web:8000"})
        assert all(r.startswith("reached") for r in own.values()), own
        for client in (victim, near, far):
            for svc in (await call(client, "list_services"))["services"]:
                await call(client, "delete_service", {"service": svc["name"], "confirm": True})
        await call(victim, "delete_database", {"database": "cache", "confirm": True})


async def test_a_drain_moves_a_tenants_services_and_names_its_databases_left_behind(
    tenant_host: AgentHost, nomad_cluster: Cluster, admin: Any
) -> None:
    host = tenant_host
    async with connect(host, host.tenant("pin-drain"), "http") as client:
        svc = await call(client, "deploy_service", greeting_service(nomad_cluster, "mover"))
        db = await call(client, "create_database", {"name": "store", "engine": "redis", "memory_mb": 64})
        node = _running_alloc(nomad_cluster, svc["id"])["NodeName"]
        (other,) = set(nomad_cluster.nodes) - {node}
        ids = node_ids(nomad_cluster)
        try:
            report = await call(admin, "drain_node", {"node": ids[node], "deadline_s": 10})
            tenant = host.tenant_ids["pin-drain"]
            assert report["moved_to"][tenant] == ids[other], report
            mine = [w for w in report["moved"] + report["stranded"] if w["tenant"] == tenant]
            assert [(w["id"], w["name"], w["data_node"]) for w in mine] == [
                (svc["id"], "mover", None),
                (db["id"], "store", ids[node]),
            ], report
            assert report["node"]["draining"] and not report["node"]["eligible"], report

            async def moved() -> str | None:
                got = await call(client, "get_service", {"service": "mover"})
                url = got.get("internal_url") or ""
                on_other = got["status"] == "running" and urlsplit(url).hostname == nomad_cluster.nodes[other][0]
                return url if on_other else None

            url = await until_value(moved, 120, "the service to run on the other node")
            assert await answers(url) == "hello mover"

            async def stranded() -> dict[str, Any] | None:
                got = await call(client, "get_database", {"database": "store"})
                return got if got["status"] == "failed" else None

            store = await until_value(stranded, 120, "the database to say its data stayed on the drained node")
            assert ids[node] in store["last_error"] and "restore_backup" in store["last_error"], store
        finally:
            await call(admin, "set_node_eligibility", {"node": ids[node], "eligible": True})
        back = await call(admin, "list_nodes")
        assert all(n["eligible"] and not n["draining"] for n in back["nodes"]), back
        await call(client, "delete_service", {"service": "mover", "confirm": True})
        await call(client, "delete_database", {"database": "store", "confirm": True})


async def test_a_lost_node_s_services_come_back_on_the_other_and_its_databases_say_where_their_data_is(
    tenant_host: AgentHost, nomad_cluster: Cluster, admin: Any
) -> None:
    """The Nomad agent of one client is killed (its node stops heartbeating): the tenant moves, its service
    answers from the other node, and its database reports that its data is on the lost node."""
    host = tenant_host
    async with connect(host, host.tenant("pin-lost"), "http") as client:
        svc = await call(client, "deploy_service", greeting_service(nomad_cluster, "survivor"))
        db = await call(client, "create_database", {"name": "keep", "engine": "redis", "memory_mb": 64})
        assert db["status"] == "running", db
        node = _running_alloc(nomad_cluster, svc["id"])["NodeName"]
        (other,) = set(nomad_cluster.nodes) - {node}
        ids = node_ids(nomad_cluster)
        kill_client_agent(node)
        try:

            async def moved() -> str | None:
                got = await call(client, "get_service", {"service": "survivor"})
                url = got.get("internal_url") or ""
                on_other = got["status"] == "running" and urlsplit(url).hostname == nomad_cluster.nodes[other][0]
                return url if on_other else None

            url = await until_value(moved, 180, "the service to run on the other node")
            assert await answers(url) == "hello survivor"

            async def stranded() -> dict[str, Any] | None:
                got = await call(client, "get_database", {"database": "keep"})
                return got if got["status"] == "failed" else None

            keep = await until_value(stranded, 120, "the database to say its data is on the lost node")
            assert f"{ids[node]}, which is down" in keep["last_error"], keep
            assert "restore_backup" in keep["last_error"], keep

            async def listed_down() -> bool | None:  # list_nodes answers from a cache of a few seconds
                nodes = {n["id"]: n for n in (await call(admin, "list_nodes"))["nodes"]}
                return True if nodes[ids[node]]["status"] == "down" else None

            await until_value(listed_down, 30, "list_nodes to show the node down")
        finally:
            await anyio.to_thread.run_sync(start_cluster)  # restarts the killed client, waits for two ready

        async def back() -> dict[str, Any] | None:
            got = await call(client, "get_database", {"database": "keep"})
            return got if got["status"] == "running" else None

        # Back on its node with its data, once the node is; the tenant follows it there, whole again.
        await until_value(back, 180, "the database to run again on its node")

        async def home() -> bool | None:
            got = await call(client, "get_service", {"service": "survivor"})
            url = got.get("internal_url") or ""
            return (
                True if got["status"] == "running" and urlsplit(url).hostname == nomad_cluster.nodes[node][0] else None
            )

        await until_value(home, 180, "the service to return to the node of its tenant's data")
        reach = await _probe(client, "survivor", {"keep": "keep:6379"})
        assert reach["keep"].startswith("reached"), reach
        await call(client, "delete_service", {"service": "survivor", "confirm": True})
        await call(client, "delete_database", {"database": "keep", "confirm": True})
