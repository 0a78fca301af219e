"""The Nomad backend's workload changes: running a spec (a registration, a deployment or a revert), starting,
restarting; and the lookups they share with the rest of ``NomadBackend``, which inherits them.

A change of a running service job is a Nomad deployment that ``rollouts.follow_deployment`` follows; when
Nomad reverts it, the job's Variable gets the env of the version that serves again (``_restore_sync``), so
what the workload reports (its spec hash) is what runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from ...errors import AgentHostError, Conflict, NoCapacity, NotFound
from ...labels import L_ID, L_INSTANCE, L_KIND, L_TENANT
from ..base import NodeInfo, WorkloadSpec, WorkloadStatus
from ..sizes import check_node_size
from ..threaded import ThreadBudget
from .allocs import await_placement, job_allocs, register_job
from .api import NomadApi, nomad_errors
from .capacity import Shares
from .jobs import (
    HASH_ITEM,
    TASK,
    job_id,
    job_template,
    job_variables,
    latest_alloc,
    parse_job,
    serving_alloc,
    status_from,
    variable_items,
    variable_path,
)
from .net import TenantNetworks
from .nodes import list_nodes
from .rollouts import (
    SPEC_META,
    asked_restarts,
    follow_deployment,
    force_reschedule,
    restart_in_place,
    revert_job,
    version_of,
    with_asked_restart,
)
from .tenants import joins_tenant_network, lost_status, move_tenant, pin_to, pinned_to, read_job
from .vars import get_variable, put_variable
from .volumes import job_volume_names, pin_after_placement, pin_job, volume_placement

__all__ = ["JobChanges"]

P = ParamSpec("P")
T = TypeVar("T")

_L_ENV_INDEX = "agenthost.nomad-env-index"
NODES_TTL_S = 5.0
_BATCH = ("sandbox", "build", "job")


class JobChanges:
    """What ``NomadBackend`` sets up in its constructor, and the workload changes built on it."""

    api: NomadApi
    instance: str
    datacenters: list[str]
    node_pool: str
    nets: TenantNetworks
    shares: Shares
    healthy_deadline_s: float
    _threads: ThreadBudget
    _own: dict[str, str]
    _nodes: tuple[float, list[NodeInfo], float] | None

    async def remove_workload(self, workload_id: str) -> bool:
        raise NotImplementedError

    async def _run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            with nomad_errors(what):
                return fn(*args, **kwargs)

        return await self._threads.run_sync(call)

    def _nodes_sync(self) -> tuple[list[NodeInfo], float]:
        now = time.monotonic()
        if self._nodes is None or now - self._nodes[0] >= NODES_TTL_S:
            self._nodes = (now, *list_nodes(self.api))
        return self._nodes[1], self._nodes[2]

    def _job(self, jid: str) -> dict[str, Any] | None:
        return read_job(self.api, jid)

    def _status_sync(self, workload_id: str, allocs: list[dict[str, Any]] | None = None) -> WorkloadStatus:
        """``allocs``: the job's allocations when the caller has just read them (a blocking query's answer)."""
        jid = job_id(workload_id)
        job = self._job(jid)
        if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            return WorkloadStatus(id=workload_id, state="missing")
        items = (get_variable(self.api, variable_path(workload_id)) or {}).get("Items") or {}
        if allocs is None:
            allocs = job_allocs(self.api, jid)
        status = status_from(workload_id, job, allocs, items.get(HASH_ITEM), asked_restarts(items))
        return lost_status(self.api, self.instance, job, allocs, status)

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """A new or stopped job is registered and waited for until its task runs; a change of a running service
        job is a Nomad deployment, followed until it succeeded (``rollout`` says which) or Nomad reverted it.

        Raises: WorkloadFailed when the deployment failed (the previous version serves again), NoCapacity,
        ImageNotFound and the other placement errors of ``await_placement``."""
        jid = job_id(spec.id)
        registered = await self._run(f"run workload {spec.id}", self._register_sync, spec)
        if isinstance(registered, WorkloadStatus):
            return registered  # unchanged
        eval_id, version, volume_labels, fresh, previous = registered
        rollout = None
        try:
            if fresh or spec.kind in _BATCH:
                await await_placement(self._run, self.api, jid, eval_id, version, spec)
            else:
                deadline = self.healthy_deadline_s + 60
                rollout = await follow_deployment(self._run, self.api, jid, eval_id, version, spec, deadline)
        except AgentHostError as exc:
            if fresh and isinstance(exc, NoCapacity):
                await self.remove_workload(spec.id)  # else Nomad places it once room frees, behind the caller's back
            elif not fresh and previous is not None:
                await self._run(f"restore the env of {spec.id}", self._restore_sync, spec.id, previous)
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
        status = await self._run(f"inspect workload {spec.id}", self._status_sync, spec.id)
        return status.model_copy(update={"rollout": rollout})

    def _register_sync(
        self, spec: WorkloadSpec
    ) -> WorkloadStatus | tuple[str, int, dict[str, dict[str, str]], bool, dict[str, str] | None]:
        """Submit ``spec`` unless its job runs it already: a revert to the job version that ran it, else a
        registration. Returns the evaluation, the version, the volumes' labels, whether the job was new or
        stopped, and the Variable's items before (to put back when the change is reverted)."""
        jid = job_id(spec.id)
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
        fresh = job is None or bool(job.get("Stop"))
        current = int(job["Version"]) if job is not None else -1
        versions = [] if fresh else self.api.get("job", jid, "versions")["Versions"]
        older = version_of(versions, spec_hash, current)
        if older is not None and not self._on_tenant_node(spec, jid, volume_node, versions, older):
            older = None  # the tenant moved since that version ran: register it anew, on the tenant's node
        if older is not None:
            put_variable(self.api, variable_path(spec.id), variable_items(spec, spec_hash))
            eval_id, version = revert_job(self.api, jid, older, current)
            return eval_id, version, volume_labels, fresh, var["Items"] if var else None
        variables = job_variables(
            spec,
            cpu_mhz_per_core=mhz,
            reserve=self.shares.reserve(self.api, self.node_pool, spec, mhz),
            datacenters=self.datacenters,
            node_pool=self.node_pool,
            nets=self.nets,
            volume_node=volume_node,
            volume_labels=volume_labels,
            healthy_deadline_s=self.healthy_deadline_s,
            first=fresh,
        )
        if variables["tenant_network"]:  # the tenant's networked workloads share its node (tenants.py)
            tenant = move_tenant(self.api, self.instance, self.node_pool, spec.tenant_id, jid, volume_node)
            variables["node_id"] = volume_node or tenant.node
        written = put_variable(self.api, variable_path(spec.id), variable_items(spec, spec_hash))
        meta = {**spec.labels, **self._own, L_ID: spec.id, L_TENANT: spec.tenant_id, L_KIND: spec.kind}
        meta.update({_L_ENV_INDEX: str(written.get("ModifyIndex", "")), SPEC_META: spec_hash})
        eval_id, version = register_job(self.api, parse_job(self.api, job_template(), variables, jid, meta))
        return eval_id, version, volume_labels, fresh, var["Items"] if var else None

    def _on_tenant_node(
        self, spec: WorkloadSpec, jid: str, volume_node: str, versions: list[dict[str, Any]], older: int
    ) -> bool:
        """Whether job version ``older`` is pinned where the tenant's networked workloads now are (or needs no
        pin), so reverting to it keeps the tenant on one node."""
        job = next((v for v in versions if int(v.get("Version", -1)) == older), None)
        if job is None or not joins_tenant_network(job) or job_volume_names(job):
            return True  # a job held by its volume is pinned to the volume's node, as it was then
        node = move_tenant(self.api, self.instance, self.node_pool, spec.tenant_id, jid, volume_node).node
        return pinned_to(job) == node

    def _restore_sync(self, workload_id: str, items: dict[str, str]) -> None:
        """Put back the env of the version Nomad reverted to (its tasks read it when they restart)."""
        job = self._job(job_id(workload_id)) or {}
        if (job.get("Meta") or {}).get(SPEC_META) == items.get(HASH_ITEM):
            put_variable(self.api, variable_path(workload_id), items)

    async def _resubmit(self, workload_id: str) -> WorkloadStatus:
        """Run the job again: a stopped one registered as it was, a failed allocation replaced by Nomad."""
        jid = job_id(workload_id)
        eval_id, version, job, newer_than = await self._run(
            f"start workload {workload_id}", self._resubmit_sync, workload_id
        )
        await await_placement(self._run, self.api, jid, eval_id, version, None, newer_than)
        names = job_volume_names(job)
        await self._run(
            f"record the volumes of {workload_id}", pin_after_placement, self.api, self.instance, names, jid, version
        )
        return await self._run(f"inspect workload {workload_id}", self._status_sync, workload_id)

    def _resubmit_sync(self, workload_id: str) -> tuple[str, int, dict[str, Any], int]:
        jid = job_id(workload_id)
        job = self._job(jid)
        if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            raise NotFound(f"workload {workload_id} has no Nomad job", "deploy it again")
        if not job.get("Stop"):
            newest = latest_alloc(job_allocs(self.api, jid))
            return force_reschedule(self.api, jid), int(job["Version"]), job, int((newest or {}).get("CreateIndex", 0))
        job["Stop"] = False
        pin_job(self.api, self.instance, job)
        if joins_tenant_network(job) and not job_volume_names(job):
            pin_to(job, move_tenant(self.api, self.instance, self.node_pool, str(job["Meta"][L_TENANT]), jid).node)
        eval_id, version = register_job(self.api, job, enforce=True)  # not over a delete_service meanwhile
        return eval_id, version, job, 0

    async def start_workload(self, workload_id: str) -> WorkloadStatus:
        def current() -> WorkloadStatus | None:
            job = self._job(job_id(workload_id))
            if job is not None and not job.get("Stop"):
                status = self._status_sync(workload_id)
                if status.state in ("running", "pending", "restarting"):
                    return status
            return None

        status = await self._run(f"start workload {workload_id}", current)
        return status if status is not None else await self._resubmit(workload_id)

    async def restart_workload(self, workload_id: str) -> WorkloadStatus:
        """The task restarts in its allocation (Nomad's restart API); a workload whose allocation ended gets a
        new one. Either way its ``restarts`` stays what it was: they count crashes."""
        alloc = serving_alloc(
            await self._run(f"find allocation of {workload_id}", job_allocs, self.api, job_id(workload_id))
        )
        task = ((alloc or {}).get("TaskStates") or {}).get(TASK) or {}
        if alloc is None or alloc.get("ClientStatus") != "running" or task.get("State") != "running":
            return await self._resubmit(workload_id)
        await self._run(f"restart workload {workload_id}", self._ask_restart_sync, workload_id, str(alloc["ID"]))
        await restart_in_place(self._run, self.api, alloc)
        return await self._run(f"inspect workload {workload_id}", self._status_sync, workload_id)

    def _ask_restart_sync(self, workload_id: str, alloc_id: str) -> None:
        var = get_variable(self.api, variable_path(workload_id))
        if var is None:
            raise NotFound(f"workload {workload_id} has no Nomad Variable", "deploy it again")
        items = with_asked_restart(var["Items"], alloc_id)
        put_variable(self.api, variable_path(workload_id), items, cas=int(var["ModifyIndex"]))
