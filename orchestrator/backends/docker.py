"""The Docker Engine backend (docker SDK, called from worker threads)."""

from __future__ import annotations

import functools
import ipaddress
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio
import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from ..errors import AgentHostError, BackendUnavailable, Conflict, ImageNotFound, InvalidInput, NotFound
from ..models import Egress
from .base import (
    LABEL_PREFIX,
    BackendInfo,
    Endpoint,
    ExecResult,
    ImageRef,
    LogLine,
    NodeInfo,
    OnLayer,
    OnLog,
    WorkloadSpec,
    WorkloadStatus,
)
from .docker_build import build_image_sync, push_image_sync, remove_layers_sync
from .docker_exec import exec_sync
from .docker_net import egress_network_name, ensure_egress_rules, iptables_available, tenant_bridge_name

__all__ = ["DockerBackend", "container_name"]

P = ParamSpec("P")
T = TypeVar("T")

_L_MANAGED = f"{LABEL_PREFIX}.managed"
_L_INSTANCE = f"{LABEL_PREFIX}.instance"
_L_ID = f"{LABEL_PREFIX}.id"
_L_TENANT = f"{LABEL_PREFIX}.tenant"
_L_KIND = f"{LABEL_PREFIX}.kind"
_L_HASH = f"{LABEL_PREFIX}.spec-hash"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RUNTIMES_TTL_S = 30.0


def container_name(workload_id: str) -> str:
    return f"ah-{workload_id}"


@contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Translate docker-py and transport failures into the agenthost error tree."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{what}: image not found ({exc.explanation})") from exc
    except docker.errors.NotFound as exc:
        raise NotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"{what}: {exc.explanation}") from exc
        if exc.status_code == 400:
            raise InvalidInput(f"{what}: {exc.explanation}") from exc
        raise AgentHostError(f"{what}: docker engine error: {exc.explanation}") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise BackendUnavailable(f"{what}: docker engine unreachable ({exc})") from exc


def _parse_ts(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    # Docker gives nanoseconds; Python keeps microseconds.
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


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
        self._own = {_L_MANAGED: "true", _L_INSTANCE: instance}
        self._subnet_pool = ipaddress.ip_network(tenant_network_pool)
        self._subnet_prefix = tenant_network_prefix
        self._publish_host = publish_host
        self._client: docker.DockerClient | None = None
        self._egress_ready = False
        self._runtimes: tuple[set[str] | None, float] = (None, 0.0)
        self._lock = anyio.Lock()

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
        filters = [f"{k}={v}" for k, v in {**self._own, _L_ID: workload_id}.items()]
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
        if container is None:
            return WorkloadStatus(id=workload_id, state="missing")
        attrs = container.attrs
        st = attrs.get("State", {})
        raw = st.get("Status", "created")
        state = {"running": "running", "restarting": "restarting", "exited": "exited", "dead": "exited"}.get(
            raw, "pending"
        )
        if raw == "running" and st.get("Restarting"):
            state = "restarting"
        endpoints: dict[int, Endpoint] = {}
        for key, binds in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
            if binds:
                endpoints[int(key.split("/")[0])] = Endpoint(host=self._publish_host, port=int(binds[0]["HostPort"]))
        labels = attrs.get("Config", {}).get("Labels") or {}
        restarts = int(attrs.get("RestartCount", 0))
        exit_code = st.get("ExitCode") if state in ("exited", "restarting") else None
        if exit_code is None and restarts:
            exit_code = self._last_exit_code(container)
        return WorkloadStatus(
            id=workload_id,
            state=state,
            endpoints=endpoints,
            restarts=restarts,
            exit_code=exit_code,
            error=st.get("Error") or None,
            oom_killed=bool(st.get("OOMKilled")),
            started_at=_parse_ts(st.get("StartedAt")),
            finished_at=_parse_ts(st.get("FinishedAt")),
            spec_hash=labels.get(_L_HASH),
            labels=labels,
        )

    def _last_exit_code(self, container: Container) -> int | None:
        """Once a restarted container runs again the engine zeroes State.ExitCode; its 'die' events keep it."""
        created = _parse_ts(container.attrs.get("Created"))
        events = self._docker().api.events(
            since=int(created.timestamp()) if created else None,
            until=int(datetime.now(UTC).timestamp()) + 1,
            filters={"container": container.id, "event": "die"},
            decode=True,
        )
        codes = [e.get("Actor", {}).get("Attributes", {}).get("exitCode") for e in events]
        return int(codes[-1]) if codes and codes[-1] is not None else None

    def _ensure_network_sync(self, name: str, labels: dict[str, str], *, internal: bool, bridge: str) -> None:
        # Tenant networks belong to this platform; the shared egress bridges to every platform on the host.
        client = self._docker()
        if client.networks.list(names=[name]):
            return
        # Docker's default pools hand each network a /16 and run dry after ~30 networks: tenant
        # networks take small subnets from a pool of their own instead.
        for attempt in range(5):
            ipam = self._tenant_ipam(client) if internal else None
            try:
                client.networks.create(
                    name,
                    driver="bridge",
                    internal=internal,
                    ipam=ipam,
                    labels={**(self._own if internal else {_L_MANAGED: "true"}), **labels},
                    options={
                        "com.docker.network.bridge.name": bridge,
                        # Shared egress bridges carry several tenants: no traffic between their containers.
                        "com.docker.network.bridge.enable_icc": "true" if internal else "false",
                    },
                )
                return
            except docker.errors.APIError as exc:
                if exc.status_code == 409 or client.networks.list(names=[name]):
                    return  # created concurrently
                if "overlap" not in str(exc.explanation) or attempt == 4:
                    raise
                # Another process took the same free subnet a moment ago: pick again.

    def _tenant_ipam(self, client: docker.DockerClient) -> docker.types.IPAMConfig:
        used = [
            ipaddress.ip_network(cfg["Subnet"], strict=False)
            for net in client.networks.list()
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []
            if cfg.get("Subnet")
        ]
        for subnet in self._subnet_pool.subnets(new_prefix=self._subnet_prefix):
            if not any(subnet.overlaps(u) for u in used):
                return docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
        raise AgentHostError(
            f"the tenant network pool {self._subnet_pool} is exhausted",
            "an operator must widen AGENTHOST_TENANT_NETWORK_POOL or remove unused tenants",
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
            _L_ID: spec.id,
            _L_TENANT: spec.tenant_id,
            _L_KIND: spec.kind,
            _L_HASH: spec.spec_hash(),
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
                    spec.network, {_L_TENANT: spec.tenant_id}, internal=True, bridge=tenant_bridge_name(spec.network)
                )
                networks.append((spec.network, spec.network_aliases))
        mounts = [
            docker.types.Mount(target=v.path, source=v.name, type="volume", read_only=v.read_only) for v in spec.volumes
        ]
        host_config: dict[str, Any] = {
            "runtime": spec.runtime,
            "read_only": spec.read_only_rootfs,
            "tmpfs": {path: f"rw,nosuid,nodev,size={mb}m" for path, mb in spec.tmpfs.items()},
            "cap_drop": ["ALL"],
            "cap_add": spec.cap_add or None,
            "security_opt": ["no-new-privileges"],
            "mem_limit": f"{spec.memory_mb}m",
            "memswap_limit": f"{spec.memory_mb}m",
            "nano_cpus": int(spec.cpus * 1e9),
            "pids_limit": spec.pids_limit,
            "mounts": mounts,
            "log_config": docker.types.LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"}),
            "restart_policy": (
                {"Name": "on-failure", "MaximumRetryCount": spec.max_restarts}
                if spec.restart == "on-failure"
                else {"Name": "no"}
            ),
        }
        if network_mode:
            host_config["network_mode"] = network_mode
        else:
            host_config["network"] = networks[0][0]
            host_config["ports"] = {f"{p}/tcp": (self._publish_host, None) for p in spec.ports}
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
            **host_config,
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
            if container is not None and (container.labels or {}).get(_L_HASH) != spec.spec_hash():
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
            return [self._status((c.labels or {}).get(_L_ID, c.name), c) for c in found]

        return await self._run("list workloads", listing)

    async def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        def read(stdout: bool) -> list[LogLine]:
            container = self._container(workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container")
            raw = container.logs(stdout=stdout, stderr=not stdout, timestamps=True, tail=tail, since=since)
            lines = []
            for line in raw.decode("utf-8", "replace").splitlines():
                ts, _, text = line.partition(" ")
                lines.append(LogLine(ts=_parse_ts(ts), stream="stdout" if stdout else "stderr", text=text))
            return lines

        merged = await self._run("read logs", read, True) + await self._run("read logs", read, False)
        merged.sort(key=lambda ln: ln.ts or _EPOCH)
        for line in merged[-tail:]:
            yield line
        if follow:
            async for line in self._follow(workload_id, merged[-1].ts if merged else since):
                yield line

    async def _follow(self, workload_id: str, since: datetime | None) -> AsyncIterator[LogLine]:
        send, receive = anyio.create_memory_object_stream[LogLine](256)
        stop = anyio.Event()

        def pump() -> None:
            container = self._container(workload_id)
            if container is None:
                return
            stream = container.logs(stream=True, follow=True, timestamps=True, since=since)
            try:
                for chunk in stream:
                    if stop.is_set():
                        break
                    for line in chunk.decode("utf-8", "replace").splitlines():
                        ts, _, text = line.partition(" ")
                        anyio.from_thread.run(send.send, LogLine(ts=_parse_ts(ts), text=text))
            finally:
                stream.close()
                anyio.from_thread.run(send.aclose)

        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(anyio.to_thread.run_sync, pump, abandon_on_cancel=True))
            try:
                async with receive:
                    async for line in receive:
                        yield line
            finally:
                stop.set()
                tg.cancel_scope.cancel()

    async def exec(
        self,
        workload_id: str,
        argv: list[str],
        timeout_s: float = 60,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        max_output_bytes: int = 1024 * 1024,
    ) -> ExecResult:
        def run() -> ExecResult:
            container = self._container(workload_id)
            if container is None or container.status != "running":
                raise InvalidInput(f"workload {workload_id} is not running", "start it first")
            return exec_sync(self._docker().api, container.id, argv, timeout_s, stdin, env, workdir, max_output_bytes)

        return await self._run(f"exec in {workload_id}", run)

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
