"""The Nomad backend: agenthost workloads as Nomad jobs on a cluster, over Nomad's HTTP API.

Services and databases are service jobs, sandboxes and builds batch jobs, all from one HCL2
file (``nomad/workload.nomad.hcl``) that Nomad parses with typed variables. Env values live in
Nomad Variables and reach tasks through a template, never in a job definition. Volumes are
dynamic host volumes, so a database's job follows its data to the node that holds it.

Everything this platform creates carries its instance id (job meta ``agenthost.instance``),
so two platforms on one cluster never take each other's workloads for orphans.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio

from ..errors import Conflict, InvalidInput, NotFound
from .base import BackendInfo, ExecResult, ImageRef, LogLine, NodeInfo, OnLog, OnOutput, WorkloadSpec, WorkloadStatus
from .nomad_allocs import await_placement, await_stopped, job_allocs
from .nomad_api import NomadApi, nomad_errors
from .nomad_exec import exec_in_alloc
from .nomad_jobs import (
    HASH_ITEM,
    L_ID,
    L_INSTANCE,
    L_KIND,
    L_MANAGED,
    L_TENANT,
    TASK,
    check_reference,
    job_id,
    job_template,
    job_variables,
    latest_alloc,
    status_from,
    variable_path,
)
from .nomad_logs import check_since, follow_logs, read_tail
from .nomad_net import Peer, TenantNetworks
from .nomad_nodes import node_info
from .nomad_vars import check_variable_path, delete_variable, get_variable, put_variable
from .nomad_volumes import VOLUME_PLUGIN, ensure_volume, list_volumes, remove_volume, volume_host_path

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["VOLUME_PLUGIN", "NomadBackend"]

P = ParamSpec("P")
T = TypeVar("T")

_L_ENV_INDEX = "agenthost.nomad-env-index"
_L_RESTART = "agenthost.nomad-restart"
_STOP_WAIT_S = 60.0
_NODES_TTL_S = 5.0


class NomadBackend:
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
    ) -> None:
        self.api = api
        self.builder_image = builder_image
        self.instance = instance
        self.nets = TenantNetworks(builder_image, instance, tenant_network_pool, tenant_network_prefix)
        self.datacenters = datacenters
        self.node_pool = node_pool
        self._own = {L_MANAGED: "true", L_INSTANCE: instance}
        self._nodes: tuple[float, list[NodeInfo], float] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, instance: str) -> NomadBackend:
        api = NomadApi(settings.nomad_addr, settings.nomad_token, settings.nomad_namespace, settings.nomad_region)
        return cls(
            api,
            instance,
            settings.nomad_datacenters,
            settings.nomad_node_pool,
            settings.image_python,
            settings.tenant_network_pool,
            settings.tenant_network_prefix,
        )

    async def _run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            with nomad_errors(what):
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(call)

    # -- engine facts -------------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        def get() -> BackendInfo:
            agent = self.api.get("agent", "self")
            leader = self.api.get("status", "leader")
            config = agent.get("config") or {}
            version = (config.get("Version") or {}).get("Version") or agent.get("member", {}).get("Tags", {}).get(
                "build", "unknown"
            )
            return BackendInfo(
                name="nomad",
                version=str(version),
                data_root=None,
                details={
                    "address": self.api.address,
                    "leader": str(leader or ""),
                    "region": str(config.get("Region") or ""),
                    "namespace": self.api.namespace,
                    "node_pool": self.node_pool,
                    "egress_note": "egress 'web' is not enforced on Nomad: services use 'open', sandboxes 'none';"
                    " a tenant's databases share its services' network, which routes out",
                },
            )

        return await self._run("nomad agent info", get)

    def _nodes_sync(self) -> tuple[list[NodeInfo], float]:
        now = time.monotonic()
        if self._nodes is not None and now - self._nodes[0] < _NODES_TTL_S:
            return self._nodes[1], self._nodes[2]
        infos: list[NodeInfo] = []
        per_core: list[float] = []
        for stub in self.api.get("nodes"):
            node = self.api.get("node", stub["ID"])
            info, mhz = node_info(node)
            infos.append(info)
            if info.status == "ready" and info.eligible and mhz:
                per_core.append(mhz)
        self._nodes = (now, infos, min(per_core, default=1000.0))
        return infos, self._nodes[2]

    async def nodes(self) -> list[NodeInfo]:
        return (await self._run("list nomad nodes", self._nodes_sync))[0]

    async def runtimes(self) -> set[str]:
        nodes = await self.nodes()
        return {r for n in nodes if n.status == "ready" and n.eligible for r in n.runtimes}

    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        def update() -> NodeInfo:
            self.api.post(
                "node",
                node_id,
                "eligibility",
                body={"NodeID": node_id, "Eligibility": "eligible" if eligible else "ineligible"},
            )
            self._nodes = None
            return node_info(self.api.get("node", node_id))[0]

        return await self._run(f"set eligibility of node {node_id}", update)

    async def image_exists(self, image: str) -> bool:
        """Nomad clients resolve images when a task is placed; here the reference must be well-formed.

        A node that cannot get the image makes ``ensure_workload`` raise ImageNotFound.
        """
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
        return status_from(workload_id, job, job_allocs(self.api, jid), spec_hash)

    def _peer_sync(self, workload_id: str) -> Peer | None:
        """The running allocation of ``workload_id``, whose network namespace a sidecar joins."""
        job = self._job(job_id(workload_id))
        if job is None or job.get("Stop") or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            return None
        running = [a for a in job_allocs(self.api, job_id(workload_id)) if a.get("ClientStatus") == "running"]
        alloc = latest_alloc(running)
        return Peer(container=f"{TASK}-{alloc['ID']}", node_id=str(alloc["NodeID"])) if alloc else None

    def _register_sync(self, job: dict[str, Any]) -> tuple[str, int]:
        result = self.api.post("jobs", body={"Job": job})
        version = int(self.api.get("job", job["ID"])["Version"])
        return str(result.get("EvalID") or ""), version

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        def ensure() -> WorkloadStatus:
            jid = job_id(spec.id)
            spec_hash = spec.spec_hash()
            job = self._job(jid)
            if job is not None and (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
                raise Conflict(f"Nomad job {jid} belongs to another agenthost instance")
            var = get_variable(self.api, variable_path(spec.id))
            if job is not None and not job.get("Stop") and var and var["Items"].get(HASH_ITEM) == spec_hash:
                return self._status_sync(spec.id)
            _, mhz = self._nodes_sync()
            variables = job_variables(
                spec,
                cpu_mhz_per_core=mhz,
                datacenters=self.datacenters,
                node_pool=self.node_pool,
                nets=self.nets,
                peer=self._peer_sync(spec.share_network_with) if spec.share_network_with else None,
            )
            path = variable_path(spec.id)
            written = put_variable(self.api, path, _items(spec, spec_hash))
            parsed: dict[str, Any] = self.api.post(
                "jobs", "parse", body={"JobHCL": job_template(), "Variables": json.dumps(variables)}
            )
            parsed.update({"ID": jid, "Name": jid, "Namespace": self.api.namespace})
            for task in parsed["TaskGroups"][0]["Tasks"]:
                # Docker takes an empty entrypoint for "none", not for "the image's own".
                if not (task.get("Config") or {}).get("entrypoint", True):
                    del task["Config"]["entrypoint"]
            parsed["Meta"] = {
                **spec.labels,
                **self._own,
                L_ID: spec.id,
                L_TENANT: spec.tenant_id,
                L_KIND: spec.kind,
                _L_ENV_INDEX: str(written.get("ModifyIndex", "")),
            }
            eval_id, version = self._register_sync(parsed)
            await_placement(self.api, jid, eval_id, version, spec)
            return self._status_sync(spec.id)

        return await self._run(f"run workload {spec.id}", ensure)

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None:
        def stop() -> None:
            jid = job_id(workload_id)
            job = self._job(jid)
            if job is None or job.get("Stop"):
                return
            self.api.delete("job", jid)
            await_stopped(self.api, jid, timeout_s + _STOP_WAIT_S)

        await self._run(f"stop workload {workload_id}", stop)

    def _resubmit_sync(self, workload_id: str, restart: bool) -> WorkloadStatus:
        jid = job_id(workload_id)
        job = self._job(jid)
        if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            raise NotFound(f"workload {workload_id} has no Nomad job", "deploy it again")
        job["Stop"] = False
        if restart:
            job["Meta"] = {**(job.get("Meta") or {}), _L_RESTART: datetime.now(UTC).isoformat()}
        eval_id, version = self._register_sync(job)
        await_placement(self.api, jid, eval_id, version, None)
        return self._status_sync(workload_id)

    async def start_workload(self, workload_id: str) -> WorkloadStatus:
        def start() -> WorkloadStatus:
            job = self._job(job_id(workload_id))
            if job is not None and not job.get("Stop"):
                status = self._status_sync(workload_id)
                if status.state in ("running", "pending", "restarting"):
                    return status
            return self._resubmit_sync(workload_id, restart=job is not None and not job.get("Stop"))

        return await self._run(f"start workload {workload_id}", start)

    async def restart_workload(self, workload_id: str) -> WorkloadStatus:
        # A new allocation rather than an in-place restart: its restart counter starts at zero again.
        return await self._run(f"restart workload {workload_id}", self._resubmit_sync, workload_id, True)

    async def remove_workload(self, workload_id: str) -> bool:
        def remove() -> bool:
            jid = job_id(workload_id)
            job = self._job(jid)
            if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
                return False
            self.api.delete("job", jid, params={"purge": "true"})
            delete_variable(self.api, variable_path(workload_id))
            await_stopped(self.api, jid, _STOP_WAIT_S)
            return True

        return await self._run(f"remove workload {workload_id}", remove)

    async def workload_status(self, workload_id: str) -> WorkloadStatus:
        return await self._run(f"inspect workload {workload_id}", self._status_sync, workload_id)

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]:
        """Statuses of this instance's jobs whose meta has ``labels``; ``spec_hash`` is left out here."""

        def listing() -> list[WorkloadStatus]:
            wanted = {**self._own, **labels}
            jobs = [
                j
                for j in self.api.get("jobs", params={"meta": "true"})
                if all((j.get("Meta") or {}).get(k) == v for k, v in wanted.items())
            ]
            if not jobs:
                return []
            by_job: dict[str, list[dict[str, Any]]] = {}
            for alloc in self.api.get("allocations", params={"resources": "true", "filter": 'JobID matches "^ah-"'}):
                by_job.setdefault(alloc["JobID"], []).append(alloc)
            return [
                status_from(j["Meta"][L_ID], {**j, "Stop": j.get("Stop")}, by_job.get(j["ID"], []), None) for j in jobs
            ]

        return await self._run("list workloads", listing)

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

    def _exec_url(self, alloc_id: str) -> Callable[[list[str]], str]:
        def url(argv: list[str]) -> str:
            return self.api.websocket_url(
                "client",
                "allocation",
                alloc_id,
                "exec",
                params={"task": TASK, "tty": "false", "command": json.dumps(argv)},
            )

        return url

    async def exec(
        self,
        workload_id: str,
        argv: list[str],
        timeout_s: float = 60,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        max_output_bytes: int = 1024 * 1024,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        alloc = await self._current_alloc(workload_id)
        task = (alloc.get("TaskStates") or {}).get(TASK) or {}
        if alloc.get("ClientStatus") != "running" or task.get("State") != "running":
            raise InvalidInput(f"workload {workload_id} is not running", "start it first")
        return await exec_in_alloc(
            self._exec_url(alloc["ID"]),
            self.api.token,
            argv,
            timeout_s,
            stdin,
            env,
            workdir,
            max_output_bytes,
            on_output,
        )

    # -- images -------------------------------------------------------------------------------

    async def build_image(
        self, context: Path, dockerfile: str, tag: str, on_log: OnLog, memory_mb: int, cpus: float, timeout_s: float
    ) -> ImageRef:
        from .nomad_build import build_on_cluster

        return await build_on_cluster(self, context, dockerfile, tag, on_log, memory_mb, cpus, timeout_s)

    async def remove_image(self, tag: str) -> None:
        """Node image caches belong to Nomad's docker driver, which collects unused images (gc.image)."""
        check_reference(tag)

    # -- volumes, networks, secrets -----------------------------------------------------------

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        await self._run(
            f"create volume {name}", ensure_volume, self.api, self.instance, self.node_pool, self._own, name, labels
        )

    async def remove_volume(self, name: str) -> bool:
        return await self._run(f"remove volume {name}", remove_volume, self.api, self.instance, name)

    async def volume_path_or_mount(self, name: str) -> str:
        """The directory on the node that holds the volume (see list_nodes for which node)."""
        return await self._run(f"inspect volume {name}", volume_host_path, self.api, name)

    async def list_volumes(self, labels: dict[str, str]) -> list[str]:
        return await self._run("list volumes", list_volumes, self.api, self.instance, labels)

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """Tenant networks are made on the node a job lands on, by the job's own prestart task
        (``nomad_net``): the control plane has no Docker socket of the nodes to make them ahead."""

    async def remove_network(self, name: str) -> bool:
        """See ensure_network: the bridges live on the nodes, which the control plane cannot reach."""
        return False

    async def put_secret(self, path: str, values: dict[str, str]) -> None:
        """Store values as the Nomad Variable ``path`` (``nomad/jobs/<job id>`` is readable by that job's tasks)."""
        check_variable_path(path)
        await self._run(f"write variable {path}", put_variable, self.api, path, values)

    async def delete_secret(self, path: str) -> None:
        check_variable_path(path)
        await self._run(f"delete variable {path}", delete_variable, self.api, path)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.api.close)


def _items(spec: WorkloadSpec, spec_hash: str) -> dict[str, str]:
    if any(k.startswith("AGENTHOST_") for k in spec.env):
        raise InvalidInput("env var names starting with AGENTHOST_ are reserved", "rename them")
    return {**spec.env, HASH_ITEM: spec_hash}
