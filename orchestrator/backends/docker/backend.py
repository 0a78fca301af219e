"""The Docker Engine backend: workloads as containers on one host (docker SDK, called from worker threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import anyio
import docker
import docker.errors
from anyio.abc import ObjectReceiveStream
from docker.models.containers import Container

from ...errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from ...labels import container_name, slot_id, tenant_bridge_name
from ..base import (
    BackendInfo,
    ExecResult,
    ExecSpec,
    LogLine,
    NodeInfo,
    OnBytes,
    OneShotResult,
    OneShotSpec,
    SessionInput,
    SessionSpec,
    WorkloadSpec,
    WorkloadStatus,
)
from ..exec_wrapper import prepared_killer_argv
from ..sizes import check_node_size
from .containers import container_status, find_container, guard_sync, list_containers, listed_id, run_container_sync
from .engine import DockerEngine, docker_errors
from .exec import Emit, exec_sync
from .logs import after_tail, follow_logs, merged_tail, read_stream
from .net import NetworkGone, remove_network_sync
from .oneshot import run_oneshot
from .prepared import PreparedExecs, prepare_sync
from .session import run_session
from .single_host import SingleHost

__all__ = ["DockerBackend"]

_RUNTIMES_TTL_S = 30.0
# A watch re-inspects after this pause: an inspect is a local call, cheap beside the wait it shortens.
_WATCH_PAUSE_S = 0.05


class DockerBackend(SingleHost):
    name = "docker"
    staged_updates = True
    local_volumes = True

    def __init__(self, engine: DockerEngine, publish_host: str = "127.0.0.1") -> None:
        """``publish_host``: the address ports are published on (the host's loopback by default)."""
        self.engine = engine
        self._publish_host = publish_host
        self._runtimes: tuple[set[str] | None, float] = (None, 0.0)
        self._host: tuple[list[NodeInfo] | None, float] = (None, 0.0)
        self._exec_limiter = anyio.CapacityLimiter(64)
        self._prepared = PreparedExecs()

    def _status(self, workload_id: str, container: Container | None) -> WorkloadStatus:
        return container_status(self.engine.client(), workload_id, container, self._publish_host)

    # -- engine facts -------------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        egress = self.engine.egress

        def get() -> BackendInfo:
            version = self.engine.client().version()
            info = self.engine.client().info()
            return BackendInfo(
                name="docker",
                version=str(version.get("Version")),
                data_root=Path(info.get("DockerRootDir", "/var/lib/docker")),
                details={
                    "api_version": str(version.get("ApiVersion")),
                    "cgroup": f"v{info.get('CgroupVersion', '1')}",
                    "egress_enforced": str(egress.available).lower(),
                    "egress_unfiltered_accepted": str(egress.allow_unfiltered).lower(),
                    "egress_allow": ",".join(egress.allow),
                },
            )

        return await self.engine.run("docker info", get)

    async def runtimes(self) -> set[str]:
        # Asked on every deploy; the engine's runtimes change only when an operator reconfigures it.
        cached, at = self._runtimes
        if cached is not None and time.monotonic() - at < _RUNTIMES_TTL_S:
            return cached
        info = await self.engine.run("docker info", lambda: self.engine.client().info())
        found = {r for r in info.get("Runtimes", {}) if r in {"runc", "runsc", "sysbox-runc"}}
        self._runtimes = (found, time.monotonic())
        return found

    async def nodes(self) -> list[NodeInfo]:
        info = await self.engine.run("docker info", lambda: self.engine.client().info())
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

    async def image_exists(self, image: str) -> bool:
        return await self.engine.image_exists(image)

    # -- workloads ----------------------------------------------------------------------------

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        host, at = self._host
        if host is None or time.monotonic() - at >= _RUNTIMES_TTL_S:
            host = await self.nodes()
            self._host = (host, time.monotonic())
        check_node_size(spec, host)

        def ensure() -> WorkloadStatus:
            try:
                container = run_container_sync(self.engine, spec, self._publish_host)
            except NetworkGone:
                # The network collector removed the tenant network after this workload's record was written
                # but before its container started (orchestrator/services/networks.py): make it again, once.
                try:
                    container = run_container_sync(self.engine, spec, self._publish_host)
                except NetworkGone as exc:
                    raise Conflict(
                        f"the network of workload {spec.id} was removed twice while it started",
                        "call again",
                    ) from exc.cause
            container.reload()
            return self._status(spec.id, container)

        return await self.engine.run(f"run workload {spec.id}", ensure)

    async def promote_workload(self, workload_id: str) -> WorkloadStatus:
        def promote() -> WorkloadStatus:
            staged = find_container(self.engine, slot_id(workload_id, "next"))
            if staged is None:
                raise NotFound(f"workload {workload_id} has no new container to promote", "start it again")
            retired = find_container(self.engine, slot_id(workload_id, "old"))
            if retired is not None:
                retired.remove(force=True)
            current = find_container(self.engine, workload_id)
            if current is not None:
                current.rename(container_name(slot_id(workload_id, "old")))
            staged.rename(container_name(workload_id))
            staged.reload()
            return self._status(workload_id, staged)

        return await self.engine.run(f"promote workload {workload_id}", promote)

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None:
        self._prepared.drop(workload_id)

        def stop() -> None:
            container = find_container(self.engine, workload_id)
            if container is not None and container.status in ("running", "restarting", "paused"):
                container.stop(timeout=int(timeout_s))

        await self.engine.run(f"stop workload {workload_id}", stop)

    async def start_workload(self, workload_id: str) -> WorkloadStatus:
        def start() -> WorkloadStatus:
            container = find_container(self.engine, workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container", "deploy it again")
            if container.status != "running":
                guard_sync(self.engine, container)
                container.start()
            container.reload()
            return self._status(workload_id, container)

        return await self.engine.run(f"start workload {workload_id}", start)

    async def restart_workload(self, workload_id: str) -> WorkloadStatus:
        self._prepared.drop(workload_id)

        def restart() -> WorkloadStatus:
            container = find_container(self.engine, workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container", "deploy it again")
            guard_sync(self.engine, container)
            container.restart(timeout=10)
            container.reload()
            return self._status(workload_id, container)

        return await self.engine.run(f"restart workload {workload_id}", restart)

    async def remove_workload(self, workload_id: str) -> bool:
        self._prepared.drop(workload_id)

        def remove() -> bool:
            container = find_container(self.engine, workload_id)
            if container is None:
                return False
            container.remove(force=True, v=False)
            return True

        return await self.engine.run(f"remove workload {workload_id}", remove)

    async def workload_status(self, workload_id: str) -> WorkloadStatus:
        return await self.engine.run(
            f"inspect workload {workload_id}",
            lambda: self._status(workload_id, find_container(self.engine, workload_id)),
        )

    async def watch_workload(self, workload_id: str, index: int, wait_s: float) -> tuple[WorkloadStatus, int]:
        if index:
            await anyio.sleep(min(wait_s, _WATCH_PAUSE_S))
        return await self.workload_status(workload_id), index + 1

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]:
        def listing() -> list[WorkloadStatus]:
            found = list_containers(self.engine, labels)
            return [self._status(listed_id(c), c) for c in found]

        return await self.engine.run("list workloads", listing)

    async def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        def read(stdout: bool) -> list[LogLine]:
            container = find_container(self.engine, workload_id)
            if container is None:
                raise NotFound(f"workload {workload_id} has no container")
            return read_stream(container, stdout, tail, since)

        run = self.engine.run
        lines = merged_tail(await run("read logs", read, True), await run("read logs", read, False), tail)
        for line in lines:
            yield line
        if follow:
            start = lines[-1].ts if lines else since
            followed = follow_logs(lambda: find_container(self.engine, workload_id), start)
            async for line in after_tail(followed, lines, since):
                yield line

    async def exec(self, workload_id: str, spec: ExecSpec) -> ExecResult:
        cancel = threading.Event()
        emit: Emit | None = None
        if spec.on_output is not None:
            callback = spec.on_output

            async def deliver(stream: str, text: str) -> None:
                await callback(stream, text)

            def emit(stream: str, text: str) -> None:
                if not cancel.is_set():
                    anyio.from_thread.run(deliver, stream, text)

        prepared = self._prepared.take(workload_id)

        def run() -> ExecResult:
            try:
                with docker_errors(f"exec in {workload_id}"):
                    return exec_sync(
                        self.engine.exec_api(),
                        container_name(workload_id),
                        spec.argv,
                        spec.timeout_s,
                        spec.stdin,
                        spec.env,
                        spec.workdir,
                        spec.max_output_bytes,
                        emit,
                        cancel,
                        prepared,
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

    async def prepare_exec(self, workload_id: str) -> str | None:
        what = f"prepare an exec in {workload_id}"
        prepared = await self.engine.run(what, lambda: prepare_sync(self.engine.exec_api(), workload_id))
        self._prepared.put(workload_id, prepared)
        return prepared.key

    async def discard_prepared_exec(self, workload_id: str) -> None:
        self._prepared.drop(workload_id)
        # Another process may hold one: its wrapper is killed in the container, and that process's next exec
        # there finds it ended and goes through the engine.
        spec = ExecSpec(prepared_killer_argv(), timeout_s=30)
        result = await self.exec(workload_id, spec)
        if result.exit_code != 0:
            raise BackendUnavailable(
                f"could not end the execs prepared in {workload_id}: {result.stderr.strip() or result.exit_code}",
                "try again; if it persists, delete the sandbox and create a new one",
            )

    async def session(
        self, workload_id: str, spec: SessionSpec, stdin: ObjectReceiveStream[SessionInput], on_output: OnBytes
    ) -> int | None:
        async def thread(fn: Callable[[], object]) -> object:
            with docker_errors(f"session in {workload_id}"):
                return await anyio.to_thread.run_sync(fn, limiter=self._exec_limiter)

        try:
            return await run_session(
                self.engine.client().api, container_name(workload_id), spec, stdin, on_output, thread
            )
        except (NotFound, Conflict) as exc:
            raise InvalidInput(f"workload {workload_id} is not running", "start it first") from exc

    # -- volumes, networks, secrets -----------------------------------------------------------

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        def ensure() -> None:
            try:
                self.engine.client().volumes.get(name)
            except docker.errors.NotFound:
                self.engine.client().volumes.create(name, labels={**self.engine.own, **labels})

        await self.engine.run(f"create volume {name}", ensure)

    async def remove_volume(self, name: str) -> bool:
        def remove() -> bool:
            try:
                self.engine.client().volumes.get(name).remove(force=True)
                return True
            except docker.errors.NotFound:
                return False

        return await self.engine.run(f"remove volume {name}", remove)

    async def volume_path_or_mount(self, name: str) -> str:
        volume = await self.engine.run(f"inspect volume {name}", lambda: self.engine.client().volumes.get(name))
        return str(volume.attrs["Mountpoint"])

    async def list_volumes(self, labels: dict[str, str]) -> list[str]:
        def listing() -> list[str]:
            return [v.name for v in self.engine.client().volumes.list(filters=self.engine.filters(labels))]

        return await self.engine.run("list volumes", listing)

    async def run_oneshot(self, spec: OneShotSpec) -> OneShotResult:
        return await run_oneshot(self.engine, spec)

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        await self.engine.run(
            f"create network {name}",
            self.engine.ensure_network_sync,
            name,
            labels,
            internal=True,
            bridge=tenant_bridge_name(name),
        )

    async def remove_network(self, name: str) -> bool:
        return await self.engine.run(
            f"remove network {name}", lambda: remove_network_sync(self.engine.client(), name, self.engine.own)
        )

    async def list_networks(self, labels: dict[str, str]) -> list[str]:
        return await self.engine.run(
            "list networks",
            lambda: [n.name for n in self.engine.client().networks.list(filters=self.engine.filters(labels))],
        )

    async def put_secret(self, path: str, values: dict[str, str]) -> None:
        """Docker has no secret store of its own: values stay encrypted in SQLite and reach containers as env."""

    async def delete_secret(self, path: str) -> None:
        """See put_secret."""

    async def close(self) -> None:
        self._prepared.close()
        await self.engine.close()
