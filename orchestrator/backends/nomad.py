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

from ..errors import AgentHostError, BackendUnavailable, Conflict, ImageNotFound, InvalidInput, NotFound
from .base import BackendInfo, ExecResult, ImageRef, LogLine, NodeInfo, OnLog, OnOutput, WorkloadSpec, WorkloadStatus
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
    task_failure,
    variable_path,
)
from .nomad_logs import check_since, follow_logs, read_tail
from .nomad_net import NET_TASK, Peer, TenantNetworks
from .nomad_nodes import node_info, placement_error

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["NomadBackend"]

P = ParamSpec("P")
T = TypeVar("T")

_L_ENV_INDEX = "agenthost.nomad-env-index"
_L_RESTART = "agenthost.nomad-restart"
_PLACEMENT_WAIT_S = 90.0
_STOP_WAIT_S = 60.0
_NODES_TTL_S = 5.0
# nomad/plugins/agenthost-dir: a directory the workload's own user can write (Nomad's mkdir makes it root's).
VOLUME_PLUGIN = "agenthost-dir"
_TERMINAL = ("complete", "failed", "lost")


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

    def _variable(self, path: str) -> dict[str, Any] | None:
        try:
            var: dict[str, Any] = self.api.get("var", path)
        except NotFound:
            return None
        return var

    def _allocs(self, jid: str) -> list[dict[str, Any]]:
        allocs: list[dict[str, Any]] = self.api.get(
            "allocations", params={"resources": "true", "filter": f"JobID == {json.dumps(jid)}"}
        )
        return allocs

    def _status_sync(self, workload_id: str) -> WorkloadStatus:
        jid = job_id(workload_id)
        job = self._job(jid)
        if job is None or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            return WorkloadStatus(id=workload_id, state="missing")
        var = self._variable(variable_path(workload_id)) or {}
        spec_hash = (var.get("Items") or {}).get(HASH_ITEM)
        return status_from(workload_id, job, self._allocs(jid), spec_hash)

    def _peer_sync(self, workload_id: str) -> Peer | None:
        """The running allocation of ``workload_id``, whose network namespace a sidecar joins."""
        job = self._job(job_id(workload_id))
        if job is None or job.get("Stop") or (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
            return None
        running = [a for a in self._allocs(job_id(workload_id)) if a.get("ClientStatus") == "running"]
        alloc = latest_alloc(running)
        return Peer(container=f"{TASK}-{alloc['ID']}", node_id=str(alloc["NodeID"])) if alloc else None

    def _register_sync(self, job: dict[str, Any]) -> tuple[str, int]:
        result = self.api.post("jobs", body={"Job": job})
        version = int(self.api.get("job", job["ID"])["Version"])
        return str(result.get("EvalID") or ""), version

    def _await_placement_sync(self, jid: str, eval_id: str, version: int, spec: WorkloadSpec | None) -> None:
        """Wait until the evaluation placed the job and its task started or failed to.

        Raises: RuntimeUnavailable / AgentHostError when no node can take it, ImageNotFound when the
        node cannot get the image, WorkloadFailed-like AgentHostError for other start failures.
        """
        deadline = time.monotonic() + _PLACEMENT_WAIT_S
        evaluation: dict[str, Any] = {}
        while eval_id and time.monotonic() < deadline:
            evaluation = self.api.get("evaluation", eval_id)
            if evaluation.get("FailedTGAllocs"):
                raise placement_error(evaluation["FailedTGAllocs"], spec.runtime if spec else None)
            if evaluation.get("Status") in ("complete", "failed", "canceled"):
                if evaluation.get("Status") != "complete":
                    raise AgentHostError(f"Nomad could not schedule {jid}: {evaluation.get('StatusDescription')}")
                break
            time.sleep(0.2)
        alloc: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            current = [a for a in self._allocs(jid) if int(a.get("JobVersion", -1)) == version]
            alloc = latest_alloc(current)
            if alloc is not None:
                failure = task_failure(alloc)
                if failure:
                    if "pull" in failure.lower() or "no such image" in failure.lower():
                        raise ImageNotFound(
                            f"image {spec.image if spec else ''!r}: the Nomad node could not get it ({failure})",
                            "push the image to a registry the nodes can reach (build_from_git does), or load it "
                            "onto the nodes",
                        )
                    if failure.startswith("preparing the tenant network"):
                        lines = read_tail(self.api, alloc["ID"], "stderr", 5, NET_TASK)
                        failure += "".join(f"\n{line.text}" for line in lines)
                        raise AgentHostError(
                            f"Nomad could not start {jid}: {failure}",
                            "the node's Docker must let the platform create bridges (see nomad/README.md)",
                        )
                    raise AgentHostError(f"Nomad could not start {jid}: {failure}", "check the image and command")
                # The main task, not the allocation: that runs already while a prestart task does.
                task = (alloc.get("TaskStates") or {}).get(TASK) or {}
                if task.get("State") in ("running", "dead") or alloc.get("ClientStatus") in _TERMINAL:
                    return
            time.sleep(0.2)
        if alloc is None:
            raise BackendUnavailable(
                f"Nomad placed no allocation for {jid} within {_PLACEMENT_WAIT_S:.0f} s "
                f"(evaluation {eval_id or '-'}: {evaluation.get('Status', 'unknown')} "
                f"{evaluation.get('StatusDescription', '')})",
                "platform_status shows the cluster; retry once its scheduler catches up",
            )

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        def ensure() -> WorkloadStatus:
            jid = job_id(spec.id)
            spec_hash = spec.spec_hash()
            job = self._job(jid)
            if job is not None and (job.get("Meta") or {}).get(L_INSTANCE) != self.instance:
                raise Conflict(f"Nomad job {jid} belongs to another agenthost instance")
            var = self._variable(variable_path(spec.id))
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
            written = self.api.put(
                "var", path, body={"Namespace": self.api.namespace, "Path": path, "Items": _items(spec, spec_hash)}
            )
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
            self._await_placement_sync(jid, eval_id, version, spec)
            return self._status_sync(spec.id)

        return await self._run(f"run workload {spec.id}", ensure)

    def _await_stopped_sync(self, jid: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(a.get("ClientStatus") in _TERMINAL for a in self._allocs(jid)):
                return
            time.sleep(0.2)

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None:
        def stop() -> None:
            jid = job_id(workload_id)
            job = self._job(jid)
            if job is None or job.get("Stop"):
                return
            self.api.delete("job", jid)
            self._await_stopped_sync(jid, timeout_s + _STOP_WAIT_S)

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
        self._await_placement_sync(jid, eval_id, version, None)
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
            try:
                self.api.delete("var", variable_path(workload_id))
            except NotFound:
                pass
            self._await_stopped_sync(jid, _STOP_WAIT_S)
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
        allocs = await self._run(f"find allocation of {workload_id}", self._allocs, job_id(workload_id))
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

    def _volume_meta_path(self, name: str) -> str:
        return f"agenthost/{self.instance}/volumes/{name}"

    def _host_volume(self, name: str) -> dict[str, Any] | None:
        for stub in self.api.get("volumes", params={"type": "host"}):
            if stub.get("Name") == name:
                volume: dict[str, Any] = self.api.get("volume", "host", stub["ID"])
                return volume
        return None

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        def ensure() -> None:
            meta = self._variable(self._volume_meta_path(name))
            volume = self._host_volume(name)
            if volume is not None and meta is None:
                raise Conflict(f"host volume {name} exists but is not this platform's", "pick another name")
            if volume is None:
                created = self.api.put(
                    "volume",
                    "host",
                    "create",
                    body={
                        "Volume": {
                            "Name": name,
                            "Namespace": self.api.namespace,
                            "PluginID": VOLUME_PLUGIN,
                            "NodePool": self.node_pool,
                            "RequestedCapabilities": [
                                {"AttachmentMode": "file-system", "AccessMode": "single-node-writer"}
                            ],
                        }
                    },
                )
                volume = created["Volume"]
                deadline = time.monotonic() + 60
                while volume.get("State") != "ready" and time.monotonic() < deadline:
                    time.sleep(0.2)
                    volume = self.api.get("volume", "host", volume["ID"])
                if volume.get("State") != "ready":
                    raise AgentHostError(f"host volume {name} did not become ready ({volume.get('State')})")
            items = {**labels, **self._own, "node": str(volume.get("NodeID", ""))}
            path = self._volume_meta_path(name)
            self.api.put("var", path, body={"Namespace": self.api.namespace, "Path": path, "Items": items})

        await self._run(f"create volume {name}", ensure)

    async def remove_volume(self, name: str) -> bool:
        def remove() -> bool:
            if self._variable(self._volume_meta_path(name)) is None:
                return False
            volume = self._host_volume(name)
            if volume is not None:
                self.api.delete("volume", "host", volume["ID"])
            self.api.delete("var", self._volume_meta_path(name))
            return volume is not None

        return await self._run(f"remove volume {name}", remove)

    async def volume_path_or_mount(self, name: str) -> str:
        """The directory on the node that holds the volume (see list_nodes for which node)."""

        def path() -> str:
            volume = self._host_volume(name)
            if volume is None:
                raise NotFound(f"volume {name} does not exist")
            return str(volume.get("HostPath", ""))

        return await self._run(f"inspect volume {name}", path)

    async def list_volumes(self, labels: dict[str, str]) -> list[str]:
        def listing() -> list[str]:
            prefix = f"agenthost/{self.instance}/volumes/"
            names = []
            for stub in self.api.get("vars", params={"prefix": prefix}):
                items = (self._variable(stub["Path"]) or {}).get("Items") or {}
                if all(items.get(k) == v for k, v in labels.items()):
                    names.append(stub["Path"][len(prefix) :])
            return names

        return await self._run("list volumes", listing)

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """Tenant networks are made on the node a job lands on, by the job's own prestart task
        (``nomad_net``): the control plane has no Docker socket of the nodes to make them ahead."""

    async def remove_network(self, name: str) -> bool:
        """See ensure_network: the bridges live on the nodes, which the control plane cannot reach."""
        return False

    async def put_secret(self, path: str, values: dict[str, str]) -> None:
        """Store values as the Nomad Variable ``path`` (``nomad/jobs/<job id>`` is readable by that job's tasks)."""
        _check_variable_path(path)
        await self._run(
            f"write variable {path}",
            self.api.put,
            "var",
            path,
            body={"Namespace": self.api.namespace, "Path": path, "Items": values},
        )

    async def delete_secret(self, path: str) -> None:
        _check_variable_path(path)

        def delete() -> None:
            try:
                self.api.delete("var", path)
            except NotFound:
                pass

        await self._run(f"delete variable {path}", delete)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.api.close)


def _items(spec: WorkloadSpec, spec_hash: str) -> dict[str, str]:
    if any(k.startswith("AGENTHOST_") for k in spec.env):
        raise InvalidInput("env var names starting with AGENTHOST_ are reserved", "rename them")
    return {**spec.env, HASH_ITEM: spec_hash}


def _check_variable_path(path: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_~/-]{1,128}", path) or "//" in path or path.startswith("/"):
        raise InvalidInput(f"invalid Nomad Variable path {path!r}", "letters, digits, '-', '_', '~' and '/' only")
