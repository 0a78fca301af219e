"""Capacity, the same on Docker and Nomad: ten sandboxes at once fit on a two-core node, a workload no node can
take is `no_capacity` with the numbers and leaves nothing behind, and a delete returns once the container is gone.

On Nomad a job reserves a share of its cpus and memory (docs/backends.md, "Capacity on Nomad"); before that,
two of ten concurrent sandboxes placed on the dev node and eight failed as `internal`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import anyio
import docker
import pytest
from mcp import Client

from orchestrator.backends.base import Backend

from .conformance import body, container_of, tenant
from .harness import AgentHost, ToolFailed, call, connect
from .nomad_agent import nomad_get

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
# On Docker and the Nomad dev agent (two cores, one node), not on the cluster (two nodes, its own tests).
single_node = pytest.mark.parametrize("host", ["docker", "nomad"], indirect=True)

# Far above what any node here has, within what a tenant may be given.
BIG_QUOTAS = {"max_memory_mb": 1_000_000, "max_service_memory_mb": 65536, "max_cpus": 64, "max_services": 5}


def tenant_with(host: AgentHost, what: str, quotas: dict[str, Any]) -> str:
    """A fresh tenant of this backend with these quotas (the others at their defaults)."""
    host.env["AGENTHOST_QUOTAS"] = json.dumps(quotas)
    try:
        return tenant(host, what)
    finally:
        del host.env["AGENTHOST_QUOTAS"]


def host_memory_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) // 1024


def nomad_jobs_of(tenant_id: str) -> list[str]:
    return [
        j["ID"] for j in nomad_get("jobs", meta="true") if (j.get("Meta") or {}).get("agenthost.tenant") == tenant_id
    ]


def live_allocs(job_id: str) -> list[dict[str, Any]]:
    allocs = nomad_get("allocations", filter=f'JobID == "{job_id}"')
    return [a for a in allocs if a["ClientStatus"] not in ("complete", "failed", "lost")]


@single_node
async def test_ten_concurrent_sandboxes_all_place_and_run(host: AgentHost, docker_client: docker.DockerClient) -> None:
    """Ten create_sandbox calls at once, each asking for a whole core, on a node of two (five per tenant: one
    tenant's calls in flight are capped at eight)."""
    keys = [tenant(host, "cap-ten-a"), tenant(host, "cap-ten-b")]
    made: dict[str, dict[str, Any]] = {}
    failures: list[ToolFailed] = []

    async def create(client: Client, name: str) -> None:
        try:
            made[name] = await call(client, "create_sandbox", {"name": name, "cpus": 1.0, "memory_mb": 256})
        except ToolFailed as exc:
            failures.append(exc)

    async with connect(host, keys[0], "http") as first, connect(host, keys[1], "http") as second:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(create, (first, second)[i % 2], f"box{i}")
        assert failures == [] and len(made) == 10, [str(f) for f in failures]

        for i in range(10):  # one after another: a tenant's execs at once are capped at four
            out = await call((first, second)[i % 2], "exec", {"sandbox": f"box{i}", "command": ["echo", f"box{i}"]})
            assert (out["exit_code"], body(out["stdout"])) == (0, f"box{i}\n"), out
        limits = container_of(host, docker_client, made["box0"]["id"]).attrs["HostConfig"]
        assert limits["Memory"] == 256 * 1024 * 1024  # memory_mb is the hard limit on both
        if host.settings.backend == "docker":
            assert limits["NanoCpus"] == 10**9
        else:
            assert limits["CpuQuota"] == 0 and 0 < limits["CpuShares"] < 1000  # a weight, no cap
            for sandbox in made.values():
                (task,) = nomad_get(f"job/ah-{sandbox['id']}")["TaskGroups"][0]["Tasks"]
                # A tenth of the core reserved, no hard cap above it (docs/backends.md).
                assert task["Resources"]["CPU"] < 1000 and task["Config"]["cpu_hard_limit"] is False, task
        for i in range(10):
            await call((first, second)[i % 2], "delete_sandbox", {"sandbox": f"box{i}", "confirm": True})
        for client in (first, second):
            assert (await call(client, "list_sandboxes"))["sandboxes"] == []


@single_node
async def test_limits_beyond_every_node_are_no_capacity_and_leave_nothing(
    host: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    key = tenant_with(host, "cap-huge", BIG_QUOTAS)
    tid = host.tenant_ids[f"cap-huge-{host.platform}"]
    memory = min(65536, host_memory_mb() + 8192)
    cpus = float((os.cpu_count() or 2) + 2)
    async with connect(host, key, "http") as client:
        for args, asked in (
            ({"memory_mb": memory}, f"{memory} MB memory"),
            ({"cpus": cpus}, f"asks for {cpus:g} cpus"),
        ):
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "huge", "image": hello_image, "port": 8000, **args})
            assert err.value.code == "no_capacity", err.value
            assert asked in err.value.message and "cores" in err.value.message, err.value.message
            assert "memory_mb" in err.value.hint
            assert (await call(client, "list_services"))["services"] == []
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_sandbox", {"memory_mb": 256, "cpus": cpus})
        assert err.value.code == "no_capacity", err.value
        assert (await call(client, "list_sandboxes"))["sandboxes"] == []
    label = {"label": f"agenthost.tenant={tid}"}
    assert docker_client.containers.list(ignore_removed=True, all=True, filters=label) == []
    if host.settings.backend == "nomad":
        assert nomad_jobs_of(tid) == []


@single_node
async def test_delete_returns_once_the_container_is_gone(
    host: AgentHost, product_backend: Backend, docker_client: docker.DockerClient, hello_image: str
) -> None:
    key = tenant(host, "cap-delete")
    tid = host.tenant_ids[f"cap-delete-{host.platform}"]
    async with connect(host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        sbx = await call(client, "create_sandbox", {"name": "box", "memory_mb": 128})
        containers = [container_of(host, docker_client, w) for w in (svc["id"], sbx["id"])]
        await call(client, "delete_service", {"service": "web", "confirm": True})
        await call(client, "delete_sandbox", {"sandbox": "box", "confirm": True})
        # At once, with no wait: the engine lists neither container, nor the platform either workload.
        for container in containers:
            assert docker_client.containers.list(ignore_removed=True, all=True, filters={"id": container.id}) == [], (
                container.name
            )
        assert (await call(client, "list_services"))["services"] == []
        assert (await call(client, "list_sandboxes"))["sandboxes"] == []
        listed = {w.id for w in await product_backend.list_workloads({"agenthost.tenant": tid})}
        assert not listed & {svc["id"], sbx["id"]}, listed
        if host.settings.backend == "nomad":
            assert live_allocs(f"ah-{svc['id']}") == [] and live_allocs(f"ah-{sbx['id']}") == []


async def test_a_full_nomad_node_is_no_capacity_with_what_is_free(
    nomad_agenthost: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    """Services that each reserve at least half the node's memory: by the third at the latest the scheduler
    finds no room, and the error names what the service reserves and what the node has free."""
    host = nomad_agenthost
    key = tenant_with(host, "cap-full", BIG_QUOTAS)
    tid = host.tenant_ids["cap-full-nomad"]
    (stub,) = [n for n in nomad_get("nodes") if n["Status"] == "ready"]
    node = nomad_get(f"node/{stub['ID']}")
    total = node["NodeResources"]["Memory"]["MemoryMB"] - node["ReservedResources"]["Memory"]["MemoryMB"]
    placed: list[str] = []
    async with connect(host, key, "http") as client:
        try:
            for i in range(3):
                try:
                    placed.append(
                        (
                            await call(
                                client,
                                "deploy_service",
                                {"name": f"fat{i}", "image": hello_image, "port": 8000, "memory_mb": total},
                            )
                        )["id"]
                    )
                except ToolFailed as exc:
                    failed = exc
                    break
            else:
                raise AssertionError(f"three services of {total} MB each placed on a node of {total} MB")
            assert failed.code == "no_capacity", failed
            message = failed.message
            config = nomad_get("operator/scheduler/configuration")["SchedulerConfig"]
            reserved = math.ceil(total * 0.5) if config["MemoryOversubscriptionEnabled"] else total
            cpus = host.settings.default_cpus
            assert f"(limits {cpus:g} cpus, {total} MB)" in message and "memory exhausted" in message, message
            assert f"CPU and {reserved} MB memory; free: node {node['Name']}: " in message, message
            assert f"MB of {total} MB memory" in message, message
            services = (await call(client, "list_services"))["services"]
            assert sorted(s["name"] for s in services) == [f"fat{i}" for i in range(len(placed))]
            assert sorted(nomad_jobs_of(tid)) == sorted(f"ah-{i}" for i in placed)  # the refused one is purged
        finally:
            for i in range(len(placed)):
                await call(client, "delete_service", {"service": f"fat{i}", "confirm": True})
    assert nomad_jobs_of(tid) == []
    assert (
        docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"agenthost.tenant={tid}"}) == []
    )
