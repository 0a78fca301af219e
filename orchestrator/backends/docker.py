"""The Docker Engine backend (docker SDK, called from worker threads)."""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import anyio
import docker
import docker.errors
from docker.models.containers import Container

from ..errors import AgentHostError, Conflict, InvalidInput, NotFound
from ..models import Egress
from .base import (
    LABEL_PREFIX,
    BackendInfo,
    ExecResult,
    ImageRef,
    LogLine,
    NodeInfo,
    OnLayer,
    OnLog,
    OnOutput,
    WorkloadSpec,
    WorkloadStatus,
)
from .docker_build import build_image_sync, push_image_sync, remove_layers_sync
from .docker_containers import (
    L_HASH,
    L_ID,
    L_INSTANCE,
    L_KIND,
    L_MANAGED,
    L_TENANT,
    container_name,
    container_status,
    docker_errors,
    host_config,
)
from .docker_exec import Emit, exec_sync
from .docker_logs import follow_logs, merged_tail, read_stream
from .docker_net import egress_network_name, ensure_bridge, ensure_egress_rules, iptables_available, tenant_bridge_name

__all__ = ["DockerBackend", "container_name"]

P = ParamSpec("P")
T = TypeVar("T")

_RUNTIMES_TTL_S = 30.0


class DockerBackend:
    name = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        publish_host: str = "127.0.0.1",
        instance: str = "default",
        tenant_network_pool: str = "10.213.0.0/16",
        tenant_network_prefix: int = 24,
    ) -> None:
        """``instance`` labels everything this platform creates, so two platforms sharing one engine
        (or a test run beside a development one) never take each other's workloads for orphans."""
        self._base_url = base_url
        self._own = {L_MANAGED: "true", L_INSTANCE: instance}
        self._subnet_pool = ipaddress.ip_network(tenant_network_pool)
        self._subnet_prefix = tenant_network_prefix
        self._publish_host = publish_host
        self._client: docker.DockerClient | None = None
        self._egress_ready = False
        self._runtimes: tuple[set[str] | None, float] = (None, 0.0)
        self._lock = anyio.Lock()
        self._exec_limiter = anyio.CapacityLimiter(64)

    # -- plumbing -----------------------------------------------------------------------------

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            if self._base_url:
                self._client = docker.DockerClient(base_url=self._base_url, version="auto", timeout=120)
            else:
                self._client = docker.from_env(version="auto", timeout=120)
        return self._client

    async def _run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            with docker_errors(what):
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(call)

    def _container(self, workload_id: str) -> Container | None:
        try:
            return self._docker().containers.get(container_name(workload_id))
        except docker.errors.NotFound:
            pass
        # Not under our naming convention (created by hand or by an older version): find it by its labels.
        filters = [f"{k}={v}" for k, v in {**self._own, L_ID: workload_id}.items()]
        found = self._docker().containers.list(all=True, filters={"label": filters})
        return found[0] if found else None

    # -- engine facts -------------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        def get() -> BackendInfo:
            version = self._docker().version()
            info = self._docker().info()
            return BackendInfo(
                name="docker",
                version=str(version.get("Version")),
                data_root=Path(info.get("DockerRootDir", "/var/lib/docker")),
                details={
                    "api_version": str(version.get("ApiVersion")),
                    "cgroup": f"v{info.get('CgroupVersion', '1')}",
                    "egress_enforced": str(iptables_available()).lower(),
                },
            )

        return await self._run("docker info", get)

    async def runtimes(self) -> set[str]:
        # Asked on every deploy; the engine's runtimes change only when an operator reconfigures it.
        cached, at = self._runtimes
        if cached is not None and time.monotonic() - at < _RUNTIMES_TTL_S:
            return cached
        info = await self._run("docker info", lambda: self._docker().info())
        found = {r for r in info.get("Runtimes", {}) if r in {"runc", "runsc", "sysbox-runc"}}
        self._runtimes = (found, time.monotonic())
        return found

    async def nodes(self) -> list[NodeInfo]:
        info = await self._run("docker info", lambda: self._docker().info())
        return [
            NodeInfo(
                id=str(info.get("ID", "local")),
                name=str(info.get("Name", "local")),
                address="127.0.0.1",
                status="ready",
                eligible=True,
                cpus=float(info.get("NCPU", 0)),
                memory_mb=int(info.get("MemTotal", 0)) // (1024 * 1024),
                runtimes=sorted(await self.runtimes()),
                drivers=["docker"],
            )
        ]

    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        raise InvalidInput(
            "the Docker backend runs on one host: there is no other node to move work to",
            "node eligibility is a Nomad backend feature",
        )

    async def image_exists(self, image: str) -> bool:
        def check() -> bool:
            try:
                self._docker().images.get(image)
                return True
            except docker.errors.ImageNotFound:
                return False

        return await self._run(f"inspect image {image}", check)

    # -- workloads ----------------------------------------------------------------------------

    def _status(self, workload_id: str, container: Container | None) -> WorkloadStatus:
        return container_status(self._docker(), workload_id, container, self._publish_host)

    def _ensure_network_sync(self, name: str, labels: dict[str, str], *, internal: bool, bridge: str) -> None:
        # Tenant networks belong to this platform; the shared egress bridges to every platform on the host.
        own = self._own if internal else {L_MANAGED: "true"}
        ensure_bridge(
            self._docker(),
            name,
            {**own, **labels},
            internal=internal,
            bridge=bridge,
            pool=self._subnet_pool,
            prefix=self._subnet_prefix,
        )

    def _ensure_egress_sync(self, policy: str) -> str:
        if policy != "open" and not self._egress_ready:
            if not iptables_available():
                raise InvalidInput(
                    f"egress policy {policy!r} cannot be enforced on this host (no iptables)",
                    "use egress='open' or ask the operator to install iptables",
                )
            try:
                ensure_egress_rules()
            except subprocess.CalledProcessError as exc:
                raise AgentHostError(f"could not install egress rules: {exc.stderr!r}") from exc
            self._egress_ready = True
        name = egress_network_name(policy)  # type: ignore[arg-type]
        self._ensure_network_sync(name, {f"{LABEL_PREFIX}.egress": policy}, internal=False, bridge=name)
        return name

    def _create_sync(self, spec: WorkloadSpec) -> Container:
        client = self._docker()
        labels = {
            **spec.labels,
            **self._own,
            L_ID: spec.id,
            L_TENANT: spec.tenant_id,
            L_KIND: spec.kind,
            L_HASH: spec.spec_hash(),
        }
        networks: list[tuple[str, list[str]]] = []
        network_mode: str | None = None
        if spec.share_network_with:
            network_mode = f"container:{container_name(spec.share_network_with)}"
        elif spec.egress == "none" and not spec.ports and not spec.network:
            network_mode = "none"
        else:
            networks.append((self._ensure_egress_sync(spec.egress), []))
            if spec.network:
                self._ensure_network_sync(
                    spec.network, {L_TENANT: spec.tenant_id}, internal=True, bridge=tenant_bridge_name(spec.network)
                )
                networks.append((spec.network, spec.network_aliases))
        config = host_config(spec)
        if network_mode:
            config["network_mode"] = network_mode
        else:
            config["network"] = networks[0][0]
            config["ports"] = {f"{p}/tcp": (self._publish_host, None) for p in spec.ports}
        container = client.containers.create(
            spec.image,
            command=spec.command,
            entrypoint=spec.entrypoint,
            name=container_name(spec.id),
            hostname=spec.network_aliases[0] if spec.network_aliases else None,
            environment=spec.env,
            labels=labels,
            user=spec.user,
            working_dir=spec.workdir,
            **config,
        )
        try:
            for net, aliases in networks[1:]:
                client.networks.get(net).connect(container, aliases=aliases or None)
        except BaseException:
            container.remove(force=True)
            raise
        return container

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        def ensure() -> WorkloadStatus:
            container = self._container(spec.id)
            if container is not None and (container.labels or {}).get(L_HASH) != spec.spec_hash():
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create_sync(spec)
            container.reload()
            if container.status not in ("running", "restarting"):
                try:
                    container.start()
                except docker.errors.APIError as exc:
                    container.remove(force=True)
                    # The engine refused to start what it accepted to create: the image, command or user
                    # cannot run as given. That is the caller's to fix, not a platform fault.
                    raise InvalidInput(
                        f"the container cannot start: {exc.explanation}",
                        "check the image's command, the command argument and the user",
                    ) from exc
            container.reload()
            return self._status(spec.id, container)

        return await self._run(f"run workload {spec.id}", ensure)

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None:
        def stop() -> None:
            container = self._container(workload_id)
            if container is not None and container.status in ("running", "restarting", "paused"):
                container.stop(timeout=int(timeout_s))

        await self._run(f"stop workload {workload_id}", stop)

    async def start_workload(self, workload_id: str) -> WorkloadStatus:
        def start() -> WorkloadStatus:
            container = self._container(workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container", "deploy it again")
            if container.status != "running":
                container.start()
            container.reload()
            return self._status(workload_id, container)

        return await self._run(f"start workload {workload_id}", start)

    async def restart_workload(self, workload_id: str) -> WorkloadStatus:
        def restart() -> WorkloadStatus:
            container = self._container(workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container", "deploy it again")
            container.restart(timeout=10)
            container.reload()
            return self._status(workload_id, container)

        return await self._run(f"restart workload {workload_id}", restart)

    async def remove_workload(self, workload_id: str) -> bool:
        def remove() -> bool:
            container = self._container(workload_id)
            if container is None:
                return False
            container.remove(force=True, v=False)
            return True

        return await self._run(f"remove workload {workload_id}", remove)

    async def workload_status(self, workload_id: str) -> WorkloadStatus:
        return await self._run(
            f"inspect workload {workload_id}", lambda: self._status(workload_id, self._container(workload_id))
        )

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]:
        def listing() -> list[WorkloadStatus]:
            filters = [f"{k}={v}" for k, v in {**self._own, **labels}.items()]
            found = self._docker().containers.list(all=True, filters={"label": filters})
            return [self._status((c.labels or {}).get(L_ID, c.name), c) for c in found]

        return await self._run("list workloads", listing)

    async def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        def read(stdout: bool) -> list[LogLine]:
            container = self._container(workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container")
            return read_stream(container, stdout, tail, since)

        lines = merged_tail(await self._run("read logs", read, True), await self._run("read logs", read, False), tail)
        for line in lines:
            yield line
        if follow:
            async for line in follow_logs(lambda: self._container(workload_id), lines[-1].ts if lines else since):
                yield line

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
        cancel = threading.Event()
        emit: Emit | None = None
        if on_output is not None:
            callback = on_output

            async def deliver(stream: str, text: str) -> None:
                await callback(stream, text)

            def emit(stream: str, text: str) -> None:
                if not cancel.is_set():
                    anyio.from_thread.run(deliver, stream, text)

        def run() -> ExecResult:
            try:
                with docker_errors(f"exec in {workload_id}"):
                    return exec_sync(
                        self._docker().api,
                        container_name(workload_id),
                        argv,
                        timeout_s,
                        stdin,
                        env,
                        workdir,
                        max_output_bytes,
                        emit,
                        cancel,
                    )
            except NotFound as exc:
                raise NotFound(f"workload {workload_id} has no container", "deploy or start it again") from exc
            except Conflict as exc:
                raise InvalidInput(f"workload {workload_id} is not running", "start it first") from exc

        try:
            # Own thread budget: long commands must not starve the engine calls of every other tool.
            return await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=self._exec_limiter)
        except anyio.get_cancelled_exc_class():
            cancel.set()  # the worker sees it within 0.25 s and kills the command inside the container
            raise

    # -- images -------------------------------------------------------------------------------

    async def build_image(
        self,
        context: Path,
        dockerfile: str,
        tag: str,
        on_log: OnLog,
        memory_mb: int,
        cpus: float,
        timeout_s: float,
        network: Egress = "open",
        labels: dict[str, str] | None = None,
        on_layer: OnLayer | None = None,
    ) -> ImageRef:
        return await build_image_sync(
            self, context, dockerfile, tag, on_log, memory_mb, cpus, timeout_s, network, labels, on_layer
        )

    async def push_image(self, tag: str, on_log: OnLog) -> str | None:
        return await push_image_sync(self, tag, on_log)

    async def remove_layers(self, layers: list[str]) -> list[str]:
        return await self._run("remove build layers", remove_layers_sync, self, layers)

    async def remove_image(self, tag: str) -> None:
        def remove() -> None:
            try:
                self._docker().images.remove(tag, force=True, noprune=False)
            except docker.errors.ImageNotFound:
                pass

        await self._run(f"remove image {tag}", remove)

    # -- volumes, networks, secrets -----------------------------------------------------------

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        def ensure() -> None:
            try:
                self._docker().volumes.get(name)
            except docker.errors.NotFound:
                self._docker().volumes.create(name, labels={**self._own, **labels})

        await self._run(f"create volume {name}", ensure)

    async def remove_volume(self, name: str) -> bool:
        def remove() -> bool:
            try:
                self._docker().volumes.get(name).remove(force=True)
                return True
            except docker.errors.NotFound:
                return False

        return await self._run(f"remove volume {name}", remove)

    async def volume_path_or_mount(self, name: str) -> str:
        volume = await self._run(f"inspect volume {name}", lambda: self._docker().volumes.get(name))
        return str(volume.attrs["Mountpoint"])

    async def list_volumes(self, labels: dict[str, str]) -> list[str]:
        def listing() -> list[str]:
            filters = [f"{k}={v}" for k, v in {**self._own, **labels}.items()]
            return [v.name for v in self._docker().volumes.list(filters={"label": filters})]

        return await self._run("list volumes", listing)

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        await self._run(
            f"create network {name}",
            self._ensure_network_sync,
            name,
            labels,
            internal=True,
            bridge=tenant_bridge_name(name),
        )

    async def remove_network(self, name: str) -> bool:
        def remove() -> bool:
            found = self._docker().networks.list(names=[name])
            for net in found:
                net.remove()
            return bool(found)

        return await self._run(f"remove network {name}", remove)

    async def put_secret(self, path: str, values: dict[str, str]) -> None:
        """Docker has no secret store of its own: values stay encrypted in SQLite and reach containers as env."""

    async def delete_secret(self, path: str) -> None:
        """See put_secret."""

    async def close(self) -> None:
        if self._client is not None:
            await anyio.to_thread.run_sync(self._client.close)
            self._client = None
