"""Quotas cannot be raced, caps bound what a tenant piles up, and tenant networks are given back.

The quotas are a tenant's, fixed when it is created (``AGENTHOST_QUOTAS`` of the process that creates it):
each test makes its own tenants with the quotas it needs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest
from mcp import Client

from orchestrator.backends.base import WorkloadSpec
from orchestrator.settings import Settings

from .engine import engine_objects
from .harness import TEST_IMAGES_ENV, AgentHost, ToolFailed, call, connect, make_repo
from .nomad_agent import backend_of

# Alone (infra/test.sh): its attacks race 25 calls over five processes sharing one data dir, and its second
# platform takes its tenant networks from a pool of its own, which changes the host's egress chain.
pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.alone]

RACERS = 25
STDIO_RACERS = 4
# The last free slot is raced for this many times.
ROUNDS = 5
# Two /24s for tenant networks, inside the default pool's range and far above what other platforms on this
# engine take from its bottom.
TWO_SUBNETS = "10.213.252.0/23"


@pytest.fixture(scope="module")
def quota_host(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    """A platform where one tenant may have all its racers in flight at once (the per-tenant cap on calls
    would otherwise answer `busy` first), builds queue two deep and sandboxes start cold."""
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("quotas")))
    host.env = {
        **TEST_IMAGES_ENV,
        "AGENTHOST_TENANT_MAX_INFLIGHT": str(RACERS + 5),
        "AGENTHOST_TENANT_MAX_BACKEND_THREADS": str(RACERS),
        "AGENTHOST_BACKEND_MAX_THREADS": str(RACERS + 8),
        "AGENTHOST_BUILD_QUEUE_LIMIT": "2",
        "AGENTHOST_ALLOW_LOCAL_GIT": "true",
        "AGENTHOST_SANDBOX_POOL_SIZE": "0",
    }
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()


def tenant_with(host: AgentHost, name: str, **quotas: int | float) -> str:
    """The key of a new tenant with these quotas (the others at their defaults)."""
    host.env["AGENTHOST_QUOTAS"] = json.dumps(quotas)
    try:
        return host.tenant(name)
    finally:
        del host.env["AGENTHOST_QUOTAS"]


async def race(
    clients: list[Client], tool: str, args: Callable[[int], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[ToolFailed]]:
    """RACERS calls of ``tool`` at once, spread over ``clients`` (several processes); (answers, refusals)."""
    done: list[dict[str, Any]] = []
    refused: list[ToolFailed] = []

    async def one(i: int) -> None:
        try:
            done.append(await call(clients[i % len(clients)], tool, args(i)))
        except ToolFailed as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(RACERS):
            tg.start_soon(one, i)
    return done, refused


async def with_clients(host: AgentHost, key: str, body: Callable[[list[Client]], Awaitable[None]]) -> None:
    """``body`` with MCP clients of ``key``: one over HTTP (`agenthost serve`) and STDIO_RACERS over stdio
    (`agenthost mcp` each), so that the racers run in several processes sharing the data dir."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(host, key, "http"))]
        clients += [await stack.enter_async_context(connect(host, key, "stdio")) for _ in range(STDIO_RACERS)]
        await body(clients)


def only_quota_refusals(refused: list[ToolFailed], mention: str) -> None:
    for exc in refused:
        assert exc.code == "quota_exceeded", exc
        assert mention in exc.message, exc.message


async def test_attack_concurrent_deploys_cannot_exceed_the_service_quota(
    quota_host: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    key = tenant_with(quota_host, "deploy-racer", max_services=3)
    tenant_id = quota_host.tenant_ids["deploy-racer"]

    def deploy(name: str) -> dict[str, Any]:
        volume = {"name": f"{name}-data", "path": "/data"}
        return {"name": name, "image": hello_image, "memory_mb": 64, "volumes": [volume], "wait": False}

    async def attack(clients: list[Client]) -> None:
        kept = [(await call(clients[0], "deploy_service", deploy(f"kept{i}")))["name"] for i in range(2)]
        for r in range(ROUNDS):
            done, refused = await race(clients, "deploy_service", lambda i, r=r: deploy(f"r{r}s{i}"))
            assert len(done) == 1 and len(refused) == RACERS - 1, (r, len(done), refused)
            only_quota_refusals(refused, "3 of 3 services")
            names = sorted([*kept, done[0]["name"]])
            assert sorted(s["name"] for s in (await call(clients[0], "list_services"))["services"]) == names
            objects = engine_objects(docker_client, tenant_id)
            assert len(objects["containers"]) == 3, objects
            assert objects["volumes"] == [f"ah-{tenant_id}-{n}-data" for n in names], objects
            await call(clients[0], "delete_service", {"service": done[0]["name"], "confirm": True})
        for name in kept:
            await call(clients[0], "delete_service", {"service": name, "confirm": True})

    await with_clients(quota_host, key, attack)
    assert engine_objects(docker_client, tenant_id) == {"containers": [], "volumes": [], "networks": []}


async def test_attack_concurrent_create_database_cannot_exceed_the_database_quota(
    quota_host: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = tenant_with(quota_host, "db-racer", max_databases=2)
    tenant_id = quota_host.tenant_ids["db-racer"]
    redis = {"engine": "redis", "memory_mb": 64, "wait": False}

    async def attack(clients: list[Client]) -> None:
        await call(clients[0], "create_database", {"name": "kept", **redis})
        for r in range(ROUNDS):
            done, refused = await race(clients, "create_database", lambda i, r=r: {"name": f"r{r}d{i}", **redis})
            assert len(done) == 1 and len(refused) == RACERS - 1, (r, len(done), refused)
            only_quota_refusals(refused, "2 of 2 databases")
            listed = (await call(clients[0], "list_databases"))["databases"]
            assert sorted(d["name"] for d in listed) == sorted(["kept", done[0]["name"]])
            objects = engine_objects(docker_client, tenant_id)
            assert len(objects["containers"]) == 2 and len(objects["volumes"]) == 2, objects
            await call(clients[0], "delete_database", {"database": done[0]["name"], "confirm": True})
        await call(clients[0], "delete_database", {"database": "kept", "confirm": True})

    await with_clients(quota_host, key, attack)
    assert engine_objects(docker_client, tenant_id) == {"containers": [], "volumes": [], "networks": []}


async def test_attack_concurrent_sandboxes_cannot_exceed_the_memory_quota(
    quota_host: AgentHost, docker_client: docker.DockerClient
) -> None:
    # Eight sandboxes are allowed by count, but only four of 512 MiB fit in 2 GiB.
    key = tenant_with(quota_host, "sandbox-racer", max_sandboxes=8, max_memory_mb=2048)
    tenant_id = quota_host.tenant_ids["sandbox-racer"]

    async def attack(clients: list[Client]) -> None:
        done, refused = await race(clients, "create_sandbox", lambda i: {"name": f"x{i}", "memory_mb": 512})
        assert len(done) == 4 and len(refused) == RACERS - 4, (len(done), refused)
        only_quota_refusals(refused, "above the quota of 2048")
        listed = (await call(clients[0], "list_sandboxes"))["sandboxes"]
        assert sorted(s["name"] for s in listed) == sorted(s["name"] for s in done)
        assert len(engine_objects(docker_client, tenant_id)["containers"]) == 4
        assert (await call(clients[0], "whoami"))["usage"]["memory_mb"] == 2048
        for sandbox in done:
            await call(clients[0], "delete_sandbox", {"sandbox": sandbox["name"], "confirm": True})

    await with_clients(quota_host, key, attack)
    assert engine_objects(docker_client, tenant_id)["containers"] == []


async def test_attack_sandbox_memory_counts_toward_the_tenant_quota(
    quota_host: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    key = tenant_with(quota_host, "sandbox-memory", max_memory_mb=2048)
    tenant_id = quota_host.tenant_ids["sandbox-memory"]
    async with connect(quota_host, key, "http") as client:
        await call(client, "deploy_service", {"name": "big", "image": hello_image, "memory_mb": 1536, "wait": False})
        await call(client, "create_sandbox", {"name": "fits", "memory_mb": 512})
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_sandbox", {"name": "over", "memory_mb": 512})
        assert err.value.code == "quota_exceeded" and "2560 MiB" in err.value.message, err.value
        with pytest.raises(ToolFailed) as err:  # and the sandbox's memory keeps a service out
            await call(client, "deploy_service", {"name": "small", "image": hello_image, "memory_mb": 64})
        assert err.value.code == "quota_exceeded" and "2112 MiB" in err.value.message, err.value
        assert (await call(client, "whoami"))["usage"]["memory_mb"] == 2048
        assert len(engine_objects(docker_client, tenant_id)["containers"]) == 2
        await call(client, "delete_sandbox", {"sandbox": "fits", "confirm": True})
        await call(client, "delete_service", {"service": "big", "confirm": True})
    assert engine_objects(docker_client, tenant_id) == {"containers": [], "volumes": [], "networks": []}


async def test_attack_concurrent_builds_cannot_exceed_the_queue_limit(quota_host: AgentHost, repo_dir: Path) -> None:
    key = quota_host.tenant("build-racer")
    repo = make_repo(repo_dir / "slow", {"Dockerfile": "FROM agenthost/python:bookworm\nRUN sleep 120\n"})
    build = {"git_url": str(repo), "wait": False}

    async def attack(clients: list[Client]) -> None:
        kept = await call(clients[0], "build_from_git", build)
        for r in range(ROUNDS):
            done, refused = await race(clients, "build_from_git", lambda i: build)
            assert len(done) == 1 and len(refused) == RACERS - 1, (r, len(done), refused)
            only_quota_refusals(refused, "2 builds queued or running")
            listed = (await call(clients[0], "list_builds"))["builds"]
            active = sorted(b["id"] for b in listed if b["status"] in ("queued", "running"))
            assert active == sorted([kept["id"], done[0]["id"]]), listed
            cancelled = await call(clients[0], "cancel_build", {"build_id": done[0]["id"]})
            assert cancelled["status"] == "cancelled", (r, cancelled)  # its place in the queue is free again
        await call(clients[0], "cancel_build", {"build_id": kept["id"]})

    await with_clients(quota_host, key, attack)


async def test_attack_volumes_are_capped(
    quota_host: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    key = tenant_with(quota_host, "volume-hoarder", max_volumes=2)
    tenant_id = quota_host.tenant_ids["volume-hoarder"]

    def service(name: str, *volumes: str) -> dict[str, Any]:
        mounts = [{"name": v, "path": f"/{v}"} for v in volumes]
        return {"name": name, "image": hello_image, "memory_mb": 64, "volumes": mounts, "wait": False}

    async with connect(quota_host, key, "http") as client:
        await call(client, "deploy_service", service("one", "a", "b"))
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", service("two", "c"))
        assert err.value.code == "quota_exceeded" and "2 of 2 volumes" in err.value.message, err.value
        await call(client, "deploy_service", service("two", "a"))  # an existing volume is no new one
        # A kept volume still counts.
        await call(client, "delete_service", {"service": "one", "keep_volumes": True, "confirm": True})
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", service("three", "d"))
        assert err.value.code == "quota_exceeded", err.value
        held = engine_objects(docker_client, tenant_id)
        assert held["volumes"] == [f"ah-{tenant_id}-a", f"ah-{tenant_id}-b"], held
        assert len(held["containers"]) == 1, held
        # Deleting the kept one frees its place.
        await call(client, "delete_volume", {"volume": "b", "confirm": True})
        await call(client, "deploy_service", service("three", "d"))
        for name in ("two", "three"):
            await call(client, "delete_service", {"service": name, "confirm": True})
    for volume in docker_client.volumes.list(filters={"label": f"agenthost.tenant={tenant_id}"}):
        volume.remove()


async def test_attack_backups_stop_at_the_byte_cap_and_restores_at_the_volume_cap(
    quota_host: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    key = tenant_with(quota_host, "backup-hoarder", max_backup_bytes=1, max_volumes=1)
    tenant_id = quota_host.tenant_ids["backup-hoarder"]
    async with connect(quota_host, key, "http") as client:
        volume = {"name": "files", "path": "/home/app"}
        await call(client, "deploy_service", {"name": "app", "image": hello_image, "volumes": [volume]})
        wrote = await call(client, "exec", {"service": "app", "command": "echo hello > /home/app/note.txt"})
        assert wrote["exit_code"] == 0, wrote
        first = await call(client, "create_backup", {"volume": "files"})
        assert first["status"] == "complete" and first["size_bytes"] > 0, first["error"]
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_backup", {"volume": "files"})
        assert err.value.code == "quota_exceeded" and "bytes" in err.value.message, err.value
        assert [b["id"] for b in (await call(client, "list_backups"))["backups"]] == [first["id"]]
        with pytest.raises(ToolFailed) as err:  # a restore into a new volume makes one more volume
            await call(client, "restore_backup", {"backup_id": first["id"], "name": "copy", "confirm": True})
        assert err.value.code == "quota_exceeded" and "1 of 1 volumes" in err.value.message, err.value
        assert engine_objects(docker_client, tenant_id)["volumes"] == [f"ah-{tenant_id}-files"]
        await call(client, "delete_backup", {"backup_id": first["id"], "confirm": True})
        second = await call(client, "create_backup", {"volume": "files"})
        assert second["status"] == "complete", second
        await call(client, "delete_backup", {"backup_id": second["id"], "confirm": True})
        await call(client, "delete_service", {"service": "app", "confirm": True})


@pytest.fixture(scope="module")
def small_pool_host(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentHost]:
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("small-pool")))
    host.env = {**TEST_IMAGES_ENV, "AGENTHOST_TENANT_NETWORK_POOL": TWO_SUBNETS}
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()


async def test_attack_tenant_networks_are_freed_for_new_tenants(
    small_pool_host: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    """With room for two tenant networks, tenant after tenant deploys and deletes: each gives its network
    (and subnet) back, so the third still deploys."""
    for name in ("first", "second", "third"):
        key = small_pool_host.tenant(name)
        tenant_id = small_pool_host.tenant_ids[name]
        async with connect(small_pool_host, key, "http") as client:
            svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
            assert svc["status"] == "running", svc
            assert engine_objects(docker_client, tenant_id)["networks"] == [f"ah-net-{tenant_id}"]
            await call(client, "delete_service", {"service": "web", "confirm": True})
        assert engine_objects(docker_client, tenant_id) == {"containers": [], "volumes": [], "networks": []}


async def test_docker_workload_starts_when_its_tenant_network_was_removed_meanwhile(
    agenthost: AgentHost, docker_client: docker.DockerClient, platform_images: Settings
) -> None:
    """The network collector (of this process or another) may remove a tenant network between a deploy's
    creating it and starting the container on it: the start makes the network again instead of failing."""
    backend = backend_of(agenthost, f"netgc-{uuid.uuid4().hex[:8]}")
    tid = f"t_netgc{uuid.uuid4().hex[:8]}"
    spec = WorkloadSpec(
        id=f"svc_{uuid.uuid4().hex[:10]}",
        kind="service",
        tenant_id=tid,
        image=platform_images.image_base,
        command=["sleep", "3600"],
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        network=f"ah-net-{tid}",
        network_aliases=["web"],
        labels={"agenthost.tenant": tid},
    )
    try:
        await backend.ensure_workload(spec)
        await backend.stop_workload(spec.id)
        docker_client.networks.get(f"ah-net-{tid}").remove()  # its container is created, not running
        status = await backend.ensure_workload(spec)
        assert status.state == "running", status
        assert engine_objects(docker_client, tid)["networks"] == [f"ah-net-{tid}"]
    finally:
        await backend.remove_workload(spec.id)
        await backend.remove_network(f"ah-net-{tid}")
        await backend.close()
    assert engine_objects(docker_client, tid) == {"containers": [], "volumes": [], "networks": []}
