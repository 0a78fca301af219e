"""The Nomad backend: agenthost workloads as Nomad jobs on a cluster, over Nomad's HTTP API.

Services and databases are service jobs, sandboxes and builds batch jobs, all from one HCL2 file
(``nomad/workload.nomad.hcl``) that Nomad parses with typed variables. Env values live in Nomad Variables
and reach tasks through a template, never in a job definition. Volumes are Docker named volumes on the
node that holds them (``volumes``), so a database's job follows its data there.

Everything this platform creates carries its instance id (job meta ``agenthost.instance``),
so two platforms on one cluster never take each other's workloads for orphans.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
from anyio.abc import ObjectReceiveStream

from ...errors import BackendUnavailable, InvalidInput, NotFound
from ...labels import L_INSTANCE, L_MANAGED
from ..base import (
    BackendInfo,
    ExecResult,
    ExecSpec,
    LogLine,
    NodeInfo,
    NoPreparedExecs,
    NoStagedUpdates,
    OnBytes,
    SessionInput,
    SessionSpec,
    WorkloadStatus,
)
from ..threaded import ThreadBudget
from .allocs import WAIT_S, await_stopped, describe_allocs, job_allocs, watch_allocs
from .api import NomadApi
from .capacity import Shares
from .changes import NODES_TTL_S, JobChanges
from .drain import NodeOperations
from .exec import Gone, exec_in_alloc, exec_url, task_gone
from .jobs import (
    TASK,
    check_reference,
    job_id,
    list_statuses,
    serving_alloc,
    variable_path,
)
from .logs import check_since, follow_logs, read_tail
from .net import NodeNetworks, TenantNetworks
from .nodes import agent_info
from .oneshot import OneShots
from .session import session_in_alloc
from .vars import check_variable_path, delete_variable, put_variable
from .volume_jobs import NodeJobs, remove_volume, volume_path
from .volumes import ensure_volume, list_volumes

if TYPE_CHECKING:
    from ...settings import Settings

__all__ = ["NomadBackend"]

P = ParamSpec("P")
T = TypeVar("T")

_STOP_WAIT_S = 60.0


# Nomad's deployments replace allocations by its own rules: no staged updates here (changes.py).
class NomadBackend(JobChanges, NodeOperations, NoPreparedExecs, NoStagedUpdates, NodeNetworks, OneShots):
    name = "nomad"

    def __init__(
        self,
        api: NomadApi,
        instance: str,
        datacenters: list[str],
        node_pool: str,
        builder_image: str = "agenthost/python:bookworm",
        tenant_network_pool: str = "10.213.0.0/16",
        tenant_network_prefix: int = 24,
        threads: ThreadBudget | None = None,
        shares: Shares | None = None,
        healthy_deadline_s: float = 45.0,
    ) -> None:
        """``shares``: what part of a workload's cpus and memory_mb its job reserves (all, without it);
        ``healthy_deadline_s``: how long the new version of an update has to become healthy."""
        self.healthy_deadline_s = healthy_deadline_s
        self.api = api
        self.shares = shares or Shares()
        self._threads = threads or ThreadBudget()
        self.builder_image = builder_image
        self.instance = instance
        self.nets = TenantNetworks(builder_image, instance, tenant_network_pool, tenant_network_prefix)
        self.datacenters = datacenters
        self.node_pool = node_pool
        self.node_jobs = NodeJobs(builder_image, datacenters, node_pool)
        self._own = {L_MANAGED: "true", L_INSTANCE: instance}
        self._nodes: tuple[float, list[NodeInfo], float] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, instance: str, threads: ThreadBudget | None = None) -> NomadBackend:
        api = NomadApi.from_settings(settings)
        return cls(
            api,
            instance,
            settings.nomad_datacenters,
            settings.nomad_node_pool,
            settings.image_python,
            settings.tenant_network_pool,
            settings.tenant_network_prefix,
            threads,
            Shares(settings.nomad_cpu_share, settings.nomad_memory_share, NODES_TTL_S),
            settings.wait_timeout_s,
        )

    # -- engine facts -------------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        return await self._run("nomad agent info", agent_info, self.api, self.node_pool)

    async def nodes(self) -> list[NodeInfo]:
        return (await self._run("list nomad nodes", self._nodes_sync))[0]

    async def runtimes(self) -> set[str]:
        nodes = await self.nodes()
        return {r for n in nodes if n.status == "ready" and n.eligible for r in n.runtimes}

    async def image_exists(self, image: str) -> bool:
        """Nodes resolve images when a task is placed (ensure_workload raises ImageNotFound): here the
        reference must be well-formed."""
        check_reference(image)
        return True

    # -- workloads ----------------------------------------------------------------------------

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None:
        jid = job_id(workload_id)

        def stop() -> bool:
            job = self._job(jid)
            if job is None or job.get("Stop"):
                return False
            self.api.delete("job", jid)
            return True

        if await self._run(f"stop workload {workload_id}", stop):
            await await_stopped(self._run, self.api, jid, timeout_s + _STOP_WAIT_S)

    async def remove_workload(self, workload_id: str) -> bool:
        jid = job_id(workload_id)

        def remove() -> bool | None:
            job = self._job(jid)
            if job is not None and (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
                return None  # another platform's
            if job is not None:
                self.api.delete("job", jid, params={"purge": "true"})
                delete_variable(self.api, variable_path(workload_id))
            return job is not None

        if (removed := await self._run(f"remove workload {workload_id}", remove)) is None:
            return False
        # Also when the job was purged already: an earlier call may have run out of time while it stopped.
        if running := await await_stopped(self._run, self.api, jid, _STOP_WAIT_S):
            raise BackendUnavailable(
                f"Nomad removed the job of {workload_id}, but after {_STOP_WAIT_S:.0f} s not all of it has stopped: "
                + describe_allocs(running),
                "its node may be down or slow (list_nodes shows it); delete it again to wait once more",
            )
        return removed

    async def workload_status(self, workload_id: str) -> WorkloadStatus:
        return await self._run(f"inspect workload {workload_id}", self._status_sync, workload_id)

    async def watch_workload(self, workload_id: str, index: int, wait_s: float) -> tuple[WorkloadStatus, int]:
        """A blocking query on the job's allocations (their task states and deployment health)."""
        jid = job_id(workload_id)
        wait_s = min(wait_s, WAIT_S)  # a worker thread is held for the wait: keep it short (allocs.py)

        def watch() -> tuple[WorkloadStatus, int]:
            allocs, next_index = watch_allocs(self.api, jid, index, wait_s)
            return self._status_sync(workload_id, allocs), next_index

        return await self._run(f"watch workload {workload_id}", watch)

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]:
        """Statuses of this instance's jobs whose meta has ``labels``; ``spec_hash`` is left out here."""

        return await self._run("list workloads", list_statuses, self.api, {**self._own, **labels})

    async def _current_alloc(self, workload_id: str) -> dict[str, Any]:
        allocs = await self._run(f"find allocation of {workload_id}", job_allocs, self.api, job_id(workload_id))
        alloc = serving_alloc(allocs)
        if alloc is None:
            raise NotFound(f"workload {workload_id} has no allocation", "deploy or start it first")
        return alloc

    async def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        alloc = await self._current_alloc(workload_id)
        check_since(since, datetime.fromtimestamp(int(alloc.get("CreateTime", 0)) / 1e9, UTC))
        lines = await self._run("read logs", read_tail, self.api, alloc["ID"], "stdout", tail)
        lines += await self._run("read logs", read_tail, self.api, alloc["ID"], "stderr", tail)
        for line in lines[-tail:]:
            yield line
        if follow:
            async for line in follow_logs(self.api, alloc["ID"]):
                yield line

    async def _running_alloc(self, workload_id: str) -> dict[str, Any]:
        """Raises: InvalidInput when the workload's main task is not running."""
        alloc = await self._current_alloc(workload_id)
        task = (alloc.get("TaskStates") or {}).get(TASK) or {}
        if alloc.get("ClientStatus") != "running" or task.get("State") != "running":
            raise InvalidInput(f"workload {workload_id} is not running", "start it first")
        return alloc

    def _gone(self, alloc: dict[str, Any]) -> Gone:
        return task_gone(lambda: self._run("inspect allocation", self.api.get, "allocation", alloc["ID"]), alloc)

    async def exec(self, workload_id: str, spec: ExecSpec) -> ExecResult:
        alloc = await self._running_alloc(workload_id)

        return await exec_in_alloc(exec_url(self.api, alloc["ID"]), self.api.access, spec, self._gone(alloc))

    async def session(
        self, workload_id: str, spec: SessionSpec, stdin: ObjectReceiveStream[SessionInput], on_output: OnBytes
    ) -> int | None:
        alloc = await self._running_alloc(workload_id)
        url = exec_url(self.api, alloc["ID"])
        return await session_in_alloc(url, self.api.access, spec, stdin, on_output, self._gone(alloc))

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Record the volume; the node's dockerd makes it where the first workload that mounts it runs."""
        await self._run(f"create volume {name}", ensure_volume, self.api, self.instance, self._own, name, labels)

    async def remove_volume(self, name: str) -> bool:
        return await remove_volume(self._run, self.api, self.node_jobs, self.instance, name)

    async def volume_path_or_mount(self, name: str) -> str:
        """The directory on the node that holds the volume (a volume not placed yet is made on a node first)."""
        return await volume_path(self._run, self.api, self.node_jobs, self.instance, name)

    async def list_volumes(self, labels: dict[str, str]) -> list[str]:
        return await self._run("list volumes", list_volumes, self.api, self.instance, labels)

    async def put_secret(self, path: str, values: dict[str, str]) -> None:
        """Store values as the Nomad Variable ``path`` (``nomad/jobs/<job id>`` is readable by that job's tasks)."""
        check_variable_path(path)
        await self._run(f"write variable {path}", put_variable, self.api, path, values)

    async def delete_secret(self, path: str) -> None:
        check_variable_path(path)
        await self._run(f"delete variable {path}", delete_variable, self.api, path)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.api.close)
