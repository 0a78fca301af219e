"""In-memory engines for the unit suite: a ``Backend`` and a ``Builder`` whose state is a few dicts.

``FakeBackend`` keeps workloads with states, endpoints, restarts and exits, volumes, networks, logs and
secrets, and answers the protocol as the real backends do (the shared checks in tests/backend_protocol.py
run against it in tests/unit/test_fake_backend.py and against Docker and Nomad in
tests/e2e/test_backend_protocol.py). What a test wants to provoke it scripts:

- ``images``: the images the engine has (``image_exists``); a workload of another image is refused;
- ``refuse``: a workload id, an image or a command's first word -> the exception creating it raises;
- ``exit_at_start``: an image -> the exit code its containers exit with as soon as they start;
- ``crash(id, code)``, ``lose(id)``, ``say(id, text)``: a running workload exits, vanishes, logs a line;
- ``on_exec``: answers ``exec`` (default: a tiny interpreter of echo, printenv, cat, pwd, true, false, exit N;
  ``quiet_commands`` succeed with no output, any other command is not found);
- ``available = False``: every call raises ``BackendUnavailable``, like an engine that is away;
- ``publish_port``: the host port every published endpoint points at (a listener the test runs);
- ``volume_root``: volumes are directories there, on this host (as on Docker, where backups read them); with
  ``name="docker"`` the platform takes the fake for an engine on its own host and allows backups.
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
from anyio.abc import ObjectReceiveStream

from orchestrator.backends.base import (
    BackendInfo,
    Endpoint,
    ExecResult,
    ExecSpec,
    LogLine,
    NodeDrain,
    NodeInfo,
    OnBytes,
    OneShotResult,
    OneShotSpec,
    SessionInput,
    SessionSpec,
    WorkloadHealth,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)
from orchestrator.backends.exec_wrapper import EXEC_MARKER
from orchestrator.errors import BackendUnavailable, ImageNotFound, InvalidInput, NotFound
from orchestrator.labels import L_ID, L_KIND, L_TENANT, slot_id

from .fake_builder import FakeBuilder

__all__ = ["FakeBackend", "FakeBuilder", "Workload"]

ExecHandler = Callable[[WorkloadSpec, ExecSpec], Awaitable[ExecResult | None]]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Workload:
    spec: WorkloadSpec
    state: WorkloadState = "running"
    restarts: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    logs: list[LogLine] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)


def _labels_of(spec: WorkloadSpec) -> dict[str, str]:
    """What the engines label a workload with: its spec's labels, its id, tenant and kind."""
    return {**spec.labels, L_ID: spec.id, L_TENANT: spec.tenant_id, L_KIND: spec.kind}


def _labelled(have: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in wanted.items())


def _cut(text: str, limit: int) -> tuple[str, bool]:
    data = text.encode()
    if len(data) <= limit:
        return text, False
    half = limit // 2
    return (data[:half] + data[-half:]).decode(errors="replace"), True


class FakeBackend:
    def __init__(
        self,
        images: set[str] | None = None,
        runtimes: set[str] | None = None,
        *,
        volume_root: Path | None = None,
        name: str = "fake",
    ) -> None:
        self.name = name
        self.staged_updates = True
        self.oneshots: list[OneShotSpec] = []
        self.oneshot_results: list[OneShotResult] = []  # answered in turn; then a clean exit
        self.volume_root = volume_root
        self.images: set[str] = set(images or ())
        self.runtime_names: set[str] = runtimes if runtimes is not None else {"runc", "runsc"}
        self.workloads: dict[str, Workload] = {}
        self.volumes: dict[str, dict[str, str]] = {}
        self.networks: dict[str, dict[str, str]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.refuse: dict[str, Exception] = {}
        self.exit_at_start: dict[str, int] = {}
        # An engine that tracks health (Nomad): its verdict on the workloads of an image.
        self.health: dict[str, WorkloadHealth] = {}
        self.on_exec: ExecHandler | None = None
        # Prepared execs: workload id -> key, until its next exec (which records (id, key) in ``prepared_used``)
        # or its removal; ``prepare_fails`` is raised by prepare_exec when set.
        self.prepared: dict[str, str] = {}
        self.prepared_used: list[tuple[str, str]] = []
        self.prepare_fails: Exception | None = None
        self.sizes: list[tuple[int, int]] = []
        # Commands that succeed silently (the database tools the platform runs inside its databases).
        self.quiet_commands: set[str] = {"psql", "redis-cli", "pg_dump", "pg_restore", "restic"}
        self.available = True
        self.closed = False
        self.publish_host = "127.0.0.1"
        self.publish_port: int | None = None
        self.removed: list[str] = []  # workload ids, in the order they were removed
        self.created: list[WorkloadSpec] = []
        self._ports = itertools.count(41000)
        self._eligible: dict[str, bool] = {"node-1": True}

    # -- scripting ----------------------------------------------------------------------------

    def _up(self) -> None:
        if not self.available:
            raise BackendUnavailable("fake engine is away")

    def crash(self, workload_id: str, exit_code: int = 1, *, oom: bool = False, restarts: int | None = None) -> None:
        w = self.workloads[workload_id]
        w.state, w.exit_code, w.oom_killed, w.finished_at = "exited", exit_code, oom, _now()
        if restarts is not None:
            w.restarts = restarts

    def lose(self, workload_id: str) -> None:
        self.workloads.pop(workload_id, None)

    def say(self, workload_id: str, text: str, stream: str = "stdout") -> None:
        line = LogLine(ts=_now(), stream="stderr" if stream == "stderr" else "stdout", text=text)
        self.workloads[workload_id].logs.append(line)

    def running(self, kind: str | None = None) -> list[WorkloadSpec]:
        return [w.spec for w in list(self.workloads.values()) if w.state == "running" and kind in (None, w.spec.kind)]

    # -- engine -------------------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        self._up()
        return BackendInfo(name=self.name, version="0-fake", details={"workloads": str(len(self.workloads))})

    async def runtimes(self) -> set[str]:
        self._up()
        return set(self.runtime_names)

    async def nodes(self) -> list[NodeInfo]:
        self._up()
        return [
            NodeInfo(
                id=node,
                name=node,
                address="127.0.0.1",
                status="ready",
                eligible=eligible,
                cpus=2,
                memory_mb=4096,
                runtimes=sorted(self.runtime_names),
                drivers=["fake"],
            )
            for node, eligible in self._eligible.items()
        ]

    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        self._up()
        raise InvalidInput("the fake engine is one host: its node cannot be drained", "run on a cluster backend")

    async def drain_node(self, node_id: str, deadline_s: int) -> NodeDrain:
        self._up()
        raise InvalidInput("the fake engine is one host: its node cannot be drained", "run on a cluster backend")

    async def relocate_tenants(self) -> dict[str, int]:
        self._up()
        return {}

    async def volumes_on(self, node_id: str) -> list[str]:
        self._up()
        return []

    async def release_volume(self, name: str, keep_copy: bool = False) -> str | None:
        self._up()
        return None

    async def reclaim_volume(self, name: str, node_id: str) -> None:
        self._up()

    async def drop_copy(self, name: str, node_id: str) -> None:
        self._up()

    async def image_exists(self, image: str) -> bool:
        self._up()
        return image in self.images

    # -- workloads ----------------------------------------------------------------------------

    def _status(self, workload_id: str) -> WorkloadStatus:
        w = self.workloads.get(workload_id)
        if w is None:
            return WorkloadStatus(id=workload_id, state="missing")
        endpoints = {
            port: Endpoint(host=self.publish_host, port=self.publish_port or host_port)
            for port, host_port in w.ports.items()
        }
        return WorkloadStatus(
            id=workload_id,
            state=w.state,
            endpoints=endpoints if w.state == "running" else {},
            restarts=w.restarts,
            exit_code=w.exit_code,
            oom_killed=w.oom_killed,
            started_at=w.started_at,
            finished_at=w.finished_at,
            spec_hash=w.spec.spec_hash(),
            labels=w.spec.labels,
        )

    def _begin(self, w: Workload) -> None:
        w.started_at, w.finished_at, w.exit_code, w.oom_killed = _now(), None, None, False
        code = self.exit_at_start.get(w.spec.image)
        if code is None:
            w.state = "running"
        else:
            w.state, w.exit_code, w.finished_at = "exited", code, _now()

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        self._up()
        key = slot_id(spec.id, spec.slot) if spec.slot else spec.id
        old = self.workloads.get(key)
        if old is not None and old.spec.spec_hash() == spec.spec_hash():
            if old.state != "running":
                self._begin(old)
            return self._status(key)
        for refused in (spec.id, spec.image, (spec.command or [""])[0]):
            if refused in self.refuse:
                raise self.refuse[refused]
        if spec.image not in self.images:
            raise ImageNotFound(f"image {spec.image!r} is not on this host")
        if spec.runtime not in self.runtime_names:
            raise InvalidInput(f"runtime {spec.runtime!r} is not installed", "use one of the engine's runtimes")
        for v in spec.volumes:
            if v.name not in self.volumes:
                await self.ensure_volume(v.name, {})
        w = Workload(spec=spec, ports={p: next(self._ports) for p in spec.ports})
        if old is not None:
            w.logs = old.logs
        self.workloads[key] = w
        self.created.append(spec)
        self._begin(w)
        return self._status(key)

    async def promote_workload(self, workload_id: str) -> WorkloadStatus:
        self._up()
        staged = self._get(slot_id(workload_id, "next"))
        current = self.workloads.pop(workload_id, None)
        if current is not None:
            self.workloads[slot_id(workload_id, "old")] = current
        self.workloads[workload_id] = self.workloads.pop(slot_id(workload_id, "next"))
        staged.spec = staged.spec.model_copy(update={"slot": None})
        return self._status(workload_id)

    def _get(self, workload_id: str) -> Workload:
        w = self.workloads.get(workload_id)
        if w is None:
            raise NotFound(f"workload {workload_id} has no container", "deploy it again")
        return w

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None:
        self._up()
        self.prepared.pop(workload_id, None)
        w = self.workloads.get(workload_id)
        if w is not None and w.state in ("running", "restarting"):
            w.state, w.exit_code, w.finished_at = "exited", 143, _now()

    async def start_workload(self, workload_id: str) -> WorkloadStatus:
        self._up()
        w = self._get(workload_id)
        if w.state != "running":
            self._begin(w)
        return self._status(workload_id)

    async def restart_workload(self, workload_id: str) -> WorkloadStatus:
        self._up()
        self.prepared.pop(workload_id, None)
        self._begin(self._get(workload_id))
        return self._status(workload_id)

    async def remove_workload(self, workload_id: str) -> bool:
        self._up()
        self.prepared.pop(workload_id, None)
        self.removed.append(workload_id)
        return self.workloads.pop(workload_id, None) is not None

    async def workload_status(self, workload_id: str) -> WorkloadStatus:
        self._up()
        return self._status(workload_id)

    async def watch_workload(self, workload_id: str, index: int, wait_s: float) -> tuple[WorkloadStatus, int]:
        if index:
            await anyio.sleep(min(wait_s, 0.05))
        st = await self.workload_status(workload_id)
        w = self.workloads.get(workload_id)
        health = self.health.get(w.spec.image) if w is not None else None
        return (st.model_copy(update={"health": health}) if health else st), index + 1

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]:
        self._up()
        return [self._status(i) for i, w in list(self.workloads.items()) if _labelled(_labels_of(w.spec), labels)]

    async def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        self._up()
        w = self._get(workload_id)
        lines = [ln for ln in w.logs if since is None or ln.ts is None or ln.ts >= since]
        shown = len(w.logs)
        for line in lines[-tail:] if tail else []:
            yield line
        while follow and self.workloads.get(workload_id) is w and w.state == "running":
            await anyio.sleep(0.02)
            for line in w.logs[shown:]:
                yield line
            shown = len(w.logs)

    async def exec(self, workload_id: str, spec: ExecSpec) -> ExecResult:
        self._up()
        w = self._get(workload_id)
        if w.state != "running":
            raise InvalidInput(f"workload {workload_id} is not running", "start it first")
        marker = self.prepared.pop(workload_id, None)
        if marker is not None:
            self.prepared_used.append((workload_id, marker))
        # Every exec carries its marker, as on the real engines (a prepared one's is the key it was prepared with).
        spec = dataclasses.replace(spec, env={EXEC_MARKER: marker or uuid.uuid4().hex[:16], **(spec.env or {})})
        result = await self.on_exec(w.spec, spec) if self.on_exec is not None else None
        if result is None:
            result = self._interpret(w.spec, spec, self.quiet_commands)
        stdout, cut_out = _cut(result.stdout, spec.max_output_bytes)
        stderr, cut_err = _cut(result.stderr, spec.max_output_bytes)
        if spec.on_output is not None:
            if stdout:
                await spec.on_output("stdout", stdout)
            if stderr:
                await spec.on_output("stderr", stderr)
        return result.model_copy(update={"stdout": stdout, "stderr": stderr, "truncated": cut_out or cut_err})

    async def prepare_exec(self, workload_id: str) -> str | None:
        self._up()
        if self.prepare_fails is not None:
            raise self.prepare_fails
        if self._get(workload_id).state != "running":
            raise InvalidInput(f"workload {workload_id} is not running", "start it first")
        self.prepared[workload_id] = uuid.uuid4().hex[:16]
        return self.prepared[workload_id]

    async def discard_prepared_exec(self, workload_id: str) -> None:
        self._up()
        if self._get(workload_id).state != "running":
            raise InvalidInput(f"workload {workload_id} is not running", "start it first")
        self.prepared.pop(workload_id, None)

    async def session(
        self, workload_id: str, spec: SessionSpec, stdin: ObjectReceiveStream[SessionInput], on_output: OnBytes
    ) -> int | None:
        """Answers as ``exec`` would; ``cat`` (which reads its input) first reads stdin to its end (terminal
        sizes are noted in ``sizes``)."""
        self._up()
        w = self._get(workload_id)
        if w.state != "running":
            raise InvalidInput(f"workload {workload_id} is not running", "start it first")
        argv = ["sh", *spec.argv[1:]] if spec.argv[:2] == ["/bin/sh", "-c"] else spec.argv
        data = bytearray()
        if argv[-1] == "cat":
            async for item in stdin:
                if item is None:
                    break
                if isinstance(item, tuple):
                    self.sizes.append(item)
                else:
                    data += item
        result = await self.exec(workload_id, ExecSpec(argv, stdin=bytes(data)))
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text:
                await on_output(stream, text.encode())
        return result.exit_code

    @staticmethod
    def _interpret(workload: WorkloadSpec, spec: ExecSpec, quiet: set[str]) -> ExecResult:
        """A few commands, enough to see argv, env, stdin, workdir and exit codes arrive."""
        argv = list(spec.argv)
        if argv[:2] == ["sh", "-c"] and len(argv) > 2:
            argv = shlex.split(argv[2])
        env = {**workload.env, **(spec.env or {})}
        out, err, code = "", "", 0
        match argv:
            case ["echo", *words]:
                out = " ".join(words) + "\n"
            case ["printenv", name]:
                code = 0 if name in env else 1
                out = env[name] + "\n" if name in env else ""
            case ["cat"]:
                out = (spec.stdin or b"").decode(errors="replace")
            case ["pwd"]:
                out = (spec.workdir or workload.workdir or "/") + "\n"
            case ["true"]:
                pass
            case ["false"]:
                code = 1
            case ["exit", n] if n.isdigit():
                code = int(n)
            case ["sleep", secs] if float(secs) > spec.timeout_s:
                return ExecResult(
                    exit_code=None, stdout="", stderr="", truncated=False, timed_out=True,
                    duration_ms=int(spec.timeout_s * 1000),
                )  # fmt: skip
            case [cmd, *_] if cmd not in ("sleep", ":", *quiet):
                err, code = f"sh: {cmd}: not found\n", 127
        return ExecResult(exit_code=code, stdout=out, stderr=err, truncated=False, timed_out=False, duration_ms=1)

    # -- volumes, networks, secrets -------------------------------------------------------------

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self._up()
        self.volumes.setdefault(name, dict(labels))
        if self.volume_root is not None:
            (self.volume_root / name).mkdir(parents=True, exist_ok=True)

    async def remove_volume(self, name: str) -> bool:
        self._up()
        if self.volume_root is not None:
            shutil.rmtree(self.volume_root / name, ignore_errors=True)
        return self.volumes.pop(name, None) is not None

    async def volume_path_or_mount(self, name: str) -> str:
        self._up()
        if name not in self.volumes:
            raise NotFound(f"volume {name} does not exist")
        return str((self.volume_root or Path("/fake-volumes")) / name)

    async def list_volumes(self, labels: dict[str, str]) -> list[str]:
        self._up()
        return sorted(n for n, have in self.volumes.items() if _labelled(have, labels))

    @property
    def local_volumes(self) -> bool:
        """Tests name the fake "docker" for an engine whose volumes the control plane reads (volume_root)."""
        return self.name == "docker"

    async def run_oneshot(self, spec: OneShotSpec) -> OneShotResult:
        """Records the job; answers the next of ``oneshot_results``."""
        self._up()
        if spec.volume is not None and spec.volume.name not in self.volumes:
            raise NotFound(f"volume {spec.volume.name} does not exist")
        self.oneshots.append(spec)
        return self.oneshot_results.pop(0) if self.oneshot_results else OneShotResult(exit_code=0, stdout="", stderr="")

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self._up()
        self.networks.setdefault(name, dict(labels))

    async def remove_network(self, name: str) -> bool:
        self._up()
        if name not in self.networks:
            return False
        if any(w.spec.network == name and w.state == "running" for w in self.workloads.values()):
            return False
        del self.networks[name]
        return True

    async def list_networks(self, labels: dict[str, str]) -> list[str]:
        self._up()
        return sorted(n for n, have in self.networks.items() if _labelled(have, labels))

    async def put_secret(self, path: str, values: dict[str, str]) -> None:
        self._up()
        self.secrets[path] = dict(values)

    async def delete_secret(self, path: str) -> None:
        self._up()
        self.secrets.pop(path, None)

    async def close(self) -> None:
        self.closed = True
