"""Volumes on Nomad 1.6 (no host volumes it could create): Docker named volumes made by the node's own
dockerd, recorded with their node in a Variable, every later job pinned to that node, and removed
from it when their owner goes. The dev node shares this machine's dockerd, so the tests see them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import docker
import docker.errors
import httpx
import pytest

from orchestrator.backends.base import VolumeSpec, WorkloadSpec
from orchestrator.backends.nomad import NomadBackend
from orchestrator.backends.nomad.api import NomadApi
from orchestrator.backends.nomad.vars import delete_variable
from orchestrator.backends.nomad.volume_jobs import NodeJobs, remove_volume, volume_path
from orchestrator.backends.nomad.volumes import claim_node, ensure_volume, volume_items, volume_meta_path
from orchestrator.errors import Conflict, InvalidInput, NotFound

from .conformance import sh
from .harness import AgentHost, call, connect
from .nomad_agent import NOMAD_ADDR, nomad_get

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NODE_ATTR = "${node.unique.id}"


def _record(host: AgentHost, name: str) -> dict[str, str]:
    items: dict[str, str] = nomad_get(f"var/{volume_meta_path(host.instance, name)}")["Items"]
    return items


async def _in_thread(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """What NomadBackend._run does, less its error translation: one API call in a worker thread."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def _pins(job: dict[str, Any]) -> list[str]:
    return [c["RTarget"] for c in job.get("Constraints") or [] if c["LTarget"] == NODE_ATTR]


@pytest.fixture
def api(nomad_agent: str) -> Iterator[NomadApi]:
    client = NomadApi(nomad_agent, None, "default", None)
    yield client
    client.close()


async def test_a_volume_lives_on_its_node_and_leaves_with_its_service(
    nomad_agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    host = nomad_agenthost
    node_id = nomad_get("nodes")[0]["ID"]
    key = host.tenant("nomad-vol")
    tid = host.tenant_ids["nomad-vol"]
    name = f"ah-{tid}-data"
    async with connect(host, key, "stdio") as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "files", "image": hello_image, "port": 8000, "volumes": [{"name": "data", "path": "/app"}]},
        )
        assert svc["status"] == "running", svc
        # Recorded as this platform's, on the node of the first job that mounts it: its tenant's node.
        items = _record(host, name)
        assert (items["node"], items["agenthost.tenant"], items["agenthost.instance"]) == (node_id, tid, host.instance)
        labels = docker_client.volumes.get(name).attrs["Labels"]
        assert (labels["agenthost.instance"], labels["agenthost.tenant"]) == (host.instance, tid)
        # The first placement went where the tenant's networked workloads go (docs/backends.md).
        assert _pins(nomad_get(f"job/ah-{svc['id']}")) == [node_id]
        assert nomad_get(f"var/agenthost/{host.instance}/tenants/{tid}")["Items"]["node"] == node_id

        # A fresh volume takes the image's /app, owner and files: the service's own user (10001) writes it.
        code, out, err = await sh(client, "id -u; test -s /app/app.py && echo kept >/app/f && echo ok", service="files")
        assert (code, out) == (0, "10001\nok\n"), err

        # A restart is in place: the same allocation, the same data.
        await call(client, "restart_service", {"service": "files"})
        assert await sh(client, "cat /app/f", service="files") == (0, "kept\n", "")
        # The job's next version is pinned to the volume's node; with a volume its allocation is replaced (no
        # canary beside it) under a deployment, and the data is there.
        await call(client, "set_env", {"service": "files", "vars": {"X": "1"}})
        assert _pins(nomad_get(f"job/ah-{svc['id']}")) == [node_id]
        deployment = nomad_get(f"job/ah-{svc['id']}/deployment")
        assert deployment["Status"] == "successful" and deployment["TaskGroups"]["main"]["DesiredCanaries"] == 0
        assert await sh(client, "cat /app/f", service="files") == (0, "kept\n", "")

        deleted = await call(client, "delete_service", {"service": "files", "confirm": True})
        assert "volume data" in deleted["removed"], deleted
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(name)
    with pytest.raises(httpx.HTTPStatusError):
        _record(host, name)


async def test_the_first_node_recorded_for_a_volume_wins(api: NomadApi) -> None:
    """Two writers (check-and-set) never record two nodes; a node Nomad no longer knows took the volume along."""
    instance = f"claim-{uuid.uuid4().hex[:8]}"
    own = {"agenthost.managed": "true", "agenthost.instance": instance}
    jobs = NodeJobs("agenthost/python:bookworm", ["*"], "default")
    gone_a, gone_b = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        ensure_volume(api, instance, own, "ah-t_1-data", {"agenthost.tenant": "t_1"})
        assert claim_node(api, instance, "ah-t_1-data", gone_a) == gone_a
        assert claim_node(api, instance, "ah-t_1-data", gone_b, "/elsewhere") == gone_a
        ensure_volume(api, instance, own, "ah-t_1-data", {"agenthost.tenant": "t_1", "agenthost.database": "db_1"})
        items = volume_items(api, instance, "ah-t_1-data")
        assert items is not None and items["node"] == gone_a and "path" not in items
        assert items["agenthost.database"] == "db_1"
        with pytest.raises(NotFound) as err:
            await volume_path(_in_thread, api, jobs, instance, "ah-t_1-data")
        assert "left the cluster" in err.value.message
        assert await remove_volume(_in_thread, api, jobs, instance, "ah-t_1-data")
        assert volume_items(api, instance, "ah-t_1-data") is None
        assert not await remove_volume(_in_thread, api, jobs, instance, "ah-t_1-data")
    finally:
        delete_variable(api, volume_meta_path(instance, "ah-t_1-data"))


async def test_volumes_of_two_nodes_are_refused_before_anything_runs(api: NomadApi, hello_image: str) -> None:
    instance = f"split-{uuid.uuid4().hex[:8]}"
    backend = NomadBackend(NomadApi(NOMAD_ADDR, None, "default", None), instance, ["*"], "default")
    own = {"agenthost.managed": "true", "agenthost.instance": instance}
    names = ["ah-t_2-a", "ah-t_2-b"]
    spec = WorkloadSpec(
        id=f"svc_{uuid.uuid4().hex[:10]}",
        kind="service",
        tenant_id="t_2",
        image=hello_image,
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        volumes=[VolumeSpec(name=n, path=f"/mnt/{n}") for n in names],
    )
    try:
        for name in names:
            ensure_volume(api, instance, own, name, {"agenthost.tenant": "t_2"})
            claim_node(api, instance, name, str(uuid.uuid4()))
        with pytest.raises(Conflict) as err:
            await backend.ensure_workload(spec)
        assert "different nodes" in err.value.message
        assert (await backend.workload_status(spec.id)).state == "missing"
    finally:
        for name in names:
            api.delete("var", volume_meta_path(instance, name))
        await backend.close()


async def test_a_volume_nobody_recorded_is_recorded_where_its_first_job_runs(
    api: NomadApi, nomad_agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    """Docker makes a volume a container mounts on first use; so does this backend, and it records it then,
    not before: a spec refused on the way leaves no record behind."""
    instance = f"first-{uuid.uuid4().hex[:8]}"
    backend = NomadBackend(NomadApi(NOMAD_ADDR, None, "default", None), instance, ["*"], "default")
    name = f"ah-t_{uuid.uuid4().hex[:8]}-x"
    spec = WorkloadSpec(
        id=f"db_{uuid.uuid4().hex[:10]}",
        kind="database",
        tenant_id="t_3",
        image=nomad_agenthost.settings.image_base,
        command=["sleep", "3600"],
        user="0",
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        health_check=None,
        volumes=[VolumeSpec(name=name, path="/data")],
    )
    try:
        with pytest.raises(InvalidInput):
            await backend.ensure_workload(spec.model_copy(update={"workdir": "/data/${NOMAD_ALLOC_ID}"}))
        assert volume_items(api, instance, name) is None
        await backend.ensure_workload(spec)
        items = volume_items(api, instance, name)
        assert items is not None and items["node"] == nomad_get("nodes")[0]["ID"]
        assert (items["agenthost.tenant"], items["agenthost.instance"]) == ("t_3", instance)
        assert docker_client.volumes.get(name).attrs["Labels"]["agenthost.instance"] == instance
        assert await backend.list_volumes({"agenthost.tenant": "t_3"}) == [name]
    finally:
        await backend.remove_workload(spec.id)
        assert await backend.remove_volume(name)
        await backend.close()
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(name)
    assert volume_items(api, instance, name) is None
