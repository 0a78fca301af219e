"""The Nomad backend: agenthost workloads as Nomad jobs on a cluster, over Nomad's HTTP API.

Services and databases are service jobs, sandboxes and builds batch jobs, all from one HCL2 file
(``nomad/workload.nomad.hcl``) that Nomad parses with typed variables. Env values live in Nomad Variables
and reach tasks through a template, never in a job definition. Volumes are Docker named volumes on the
node that holds them (``volumes``), so a database's job follows its data there.

Everything this platform creates carries its instance id (job meta ``agenthost.instance``),
so two platforms on one cluster never take each other's workloads for orphans.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
from anyio.abc import ObjectReceiveStream

from ...errors import BackendUnavailable, Conflict, InvalidInput, NoCapacity, NotFound
from ...labels import L_ID, L_INSTANCE, L_KIND, L_MANAGED, L_TENANT
from ..base import (
    BackendInfo,
    ExecResult,
    ExecSpec,
    LogLine,
    NodeInfo,
    NoStagedUpdates,
    OnBytes,
    SessionInput,
    SessionSpec,
    WorkloadSpec,
    WorkloadStatus,
)
from ..sizes import check_node_size
from ..threaded import ThreadBudget
from .allocs import await_placement, await_stopped, job_allocs, register_job
from .api import NomadApi, nomad_errors
from .capacity import Shares
from .drain import NodeOperations
from .exec import Gone, exec_in_alloc, exec_url, task_gone
from .jobs import (
    HASH_ITEM,
    TASK,
    check_reference,
    job_id,
    job_template,
    job_variables,
    latest_alloc,
    list_statuses,
    parse_job,
    status_from,
    variable_items,
    variable_path,
)
from .logs import check_since, follow_logs, read_tail
from .net import NodeNetworks, Peer, TenantNetworks
from .nodes import agent_info, list_nodes
from .session import session_in_alloc
from .tenants import joins_tenant_network, lost_status, move_tenant, pin_to
from .vars import check_variable_path, delete_variable, get_variable, put_variable
from .volume_jobs import NodeJobs, remove_volume, volume_path
from .volumes import ensure_volume, job_volume_names, list_volumes, pin_after_placement, pin_job, volume_placement

if TYPE_CHECKING:
    from ...settings import Settings

__all__ = ["NomadBackend"]

P = ParamSpec("P")
T = TypeVar("T")

_L_ENV_INDEX = "agenthost.nomad-env-index"
_L_RESTART = "agenthost.nomad-restart"
_STOP_WAIT_S = 60.0
_NODES_TTL_S = 5.0


class NomadBackend(
    NodeOperations, NoStagedUpdates, NodeNetworks
):  # Nomad's deployments replace allocations by its own rules
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
    ) -> None:
        """``shares``: what part of a workload's cpus and memory_mb its job reserves (all, without it)."""
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
        api = NomadApi(settings.nomad_addr, settings.nomad_token, settings.nomad_namespace, settings.nomad_region)
        return cls(
            api,
            instance,
            settings.nomad_datacenters,
            settings.nomad_node_pool,
            settings.image_python,
            settings.tenant_network_pool,
            settings.tenant_network_prefix,
            threads,
            Shares(settings.nomad_cpu_share, settings.nomad_memory_share, _NODES_TTL_S),
        )

    async def _run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            with nomad_errors(what):
                return fn(*args, **kwargs)

        return await self._threads.run_sync(call)

    # -- engine facts -------------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        return await self._run("nomad agent info", agent_info, self.api, self.node_pool)

    def _nodes_sync(self) -> tuple[list[NodeInfo], float]:
        now = time.monotonic()
        if self._nodes is None or now - self._nodes[0] >= _NODES_TTL_S:
            self._nodes = (now, *list_nodes(self.api))
        return self._nodes[1], self._nodes[2]

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

    def _job(self, jid: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = self.api.get("job", jid)
        except NotFound:
            return None
        return job

    def _status_sync(self, workload_id: str) -> WorkloadStatus:
        jid = job_id(workload_id)
        job = self._job(jid)
        if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            return WorkloadStatus(id=workload_id, state="missing")
        var = get_variable(self.api, variable_path(workload_id)) or {}
        spec_hash = (var.get("Items") or {}).get(HASH_ITEM)
        allocs = job_allocs(self.api, jid)
        return lost_status(self.api, self.instance, job, allocs, status_from(workload_id, job, allocs, spec_hash))

    def _peer_sync(self, workload_id: str) -> Peer | None:
        """The running allocation of ``workload_id``, whose network namespace a sidecar joins."""
        job = self._job(job_id(workload_id))
        if job is None or job.get("Stop") or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            return None
        running = [a for a in job_allocs(self.api, job_id(workload_id)) if a.get("ClientStatus") == "running"]
        alloc = latest_alloc(running)
        return Peer(container=f"{TASK}-{alloc['ID']}", node_id=str(alloc["NodeID"])) if alloc else None

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        jid = job_id(spec.id)

        def ensure() -> WorkloadStatus | tuple[str, int, dict[str, dict[str, str]], bool]:
            spec_hash = spec.spec_hash()
            job = self._job(jid)
            if job is not None and (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
                raise Conflict(f"Nomad job {jid} belongs to another agenthost instance")
            var = get_variable(self.api, variable_path(spec.id))
            if job is not None and not job.get("Stop") and var and var["Items"].get(HASH_ITEM) == spec_hash:
                return self._status_sync(spec.id)
            nodes, mhz = self._nodes_sync()
            check_node_size(spec, nodes)
            volume_node, volume_labels = volume_placement(self.api, self.instance, self._own, spec)
            variables = job_variables(
                spec,
                cpu_mhz_per_core=mhz,
                reserve=self.shares.reserve(self.api, self.node_pool, spec, mhz),
                datacenters=self.datacenters,
                node_pool=self.node_pool,
                nets=self.nets,
                peer=self._peer_sync(spec.share_network_with) if spec.share_network_with else None,
                volume_node=volume_node,
                volume_labels=volume_labels,
            )
            if variables["tenant_network"]:  # the tenant's networked workloads share its node (tenants.py)
                tenant = move_tenant(self.api, self.instance, self.node_pool, spec.tenant_id, jid, volume_node)
                variables["node_id"] = volume_node or variables["node_id"] or tenant.node
            written = put_variable(self.api, variable_path(spec.id), variable_items(spec, spec_hash))
            meta = {**spec.labels, **self._own, L_ID: spec.id, L_TENANT: spec.tenant_id, L_KIND: spec.kind}
            meta[_L_ENV_INDEX] = str(written.get("ModifyIndex", ""))
            fresh = job is None or bool(job.get("Stop"))
            eval_id, version = register_job(self.api, parse_job(self.api, job_template(), variables, jid, meta))
            return eval_id, version, volume_labels, fresh

        registered = await self._run(f"run workload {spec.id}", ensure)
        if isinstance(registered, WorkloadStatus):
            return registered  # unchanged
        eval_id, version, volume_labels, fresh = registered
        try:
            await await_placement(self._run, self.api, jid, eval_id, version, spec)
        except NoCapacity:
            if fresh:  # else Nomad places it by itself once room frees, behind the caller's back
                await self.remove_workload(spec.id)
            raise
        names = [v.name for v in spec.volumes]
        await self._run(
            f"record the volumes of {spec.id}",
            pin_after_placement,
            self.api,
            self.instance,
            names,
            jid,
            version,
            volume_labels,
        )
        return await self._run(f"inspect workload {spec.id}", self._status_sync, spec.id)

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

    async def _resubmit(self, workload_id: str, restart: bool) -> WorkloadStatus:
        jid = job_id(workload_id)
        eval_id, version, job = await self._run(
            f"start workload {workload_id}", self._resubmit_sync, workload_id, restart
        )
        await await_placement(self._run, self.api, jid, eval_id, version, None)
        names = job_volume_names(job)
        await self._run(
            f"record the volumes of {workload_id}", pin_after_placement, self.api, self.instance, names, jid, version
        )
        return await self._run(f"inspect workload {workload_id}", self._status_sync, workload_id)

    def _resubmit_sync(self, workload_id: str, restart: bool) -> tuple[str, int, dict[str, Any]]:
        jid = job_id(workload_id)
        job = self._job(jid)
        if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            raise NotFound(f"workload {workload_id} has no Nomad job", "deploy it again")
        job["Stop"] = False
        if restart:
            job["Meta"] = {**(job.get("Meta") or {}), _L_RESTART: datetime.now(UTC).isoformat()}
        pin_job(self.api, self.instance, job)
        if joins_tenant_network(job) and not job_volume_names(job):
            pin_to(job, move_tenant(self.api, self.instance, self.node_pool, str(job["Meta"][L_TENANT]), jid).node)
        eval_id, version = register_job(self.api, job)
        return eval_id, version, job

    async def start_workload(self, workload_id: str) -> WorkloadStatus:
        def current() -> tuple[WorkloadStatus | None, bool]:
            job = self._job(job_id(workload_id))
            if job is not None and not job.get("Stop"):
                status = self._status_sync(workload_id)
                if status.state in ("running", "pending", "restarting"):
                    return status, False
            return None, job is not None and not job.get("Stop")

        status, restart = await self._run(f"start workload {workload_id}", current)
        return status if status is not None else await self._resubmit(workload_id, restart)

    async def restart_workload(self, workload_id: str) -> WorkloadStatus:
        # A new allocation rather than an in-place restart: its restart counter starts at zero again.
        return await self._resubmit(workload_id, True)

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
        if not await await_stopped(self._run, self.api, jid, _STOP_WAIT_S):
            raise BackendUnavailable(
                f"Nomad removed the job of {workload_id}, but its allocation still runs after {_STOP_WAIT_S:.0f} s",
                "its node may be down or slow (list_nodes shows it); delete it again to wait once more",
            )
        return removed

    async def workload_status(self, workload_id: str) -> WorkloadStatus:
        return await self._run(f"inspect workload {workload_id}", self._status_sync, workload_id)

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]:
        """Statuses of this instance's jobs whose meta has ``labels``; ``spec_hash`` is left out here."""

        return await self._run("list workloads", list_statuses, self.api, {**self._own, **labels})

    async def _current_alloc(self, workload_id: str) -> dict[str, Any]:
        allocs = await self._run(f"find allocation of {workload_id}", job_allocs, self.api, job_id(workload_id))
        alloc = latest_alloc(allocs)
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

        return await exec_in_alloc(exec_url(self.api, alloc["ID"]), self.api.token, spec, self._gone(alloc))

    async def session(
        self, workload_id: str, spec: SessionSpec, stdin: ObjectReceiveStream[SessionInput], on_output: OnBytes
    ) -> int | None:
        alloc = await self._running_alloc(workload_id)
        url = exec_url(self.api, alloc["ID"])
        return await session_in_alloc(url, self.api.token, spec, stdin, on_output, self._gone(alloc))

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
