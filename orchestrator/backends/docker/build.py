"""``docker build`` of a prepared context: limits, network policy, live log, and nothing left behind.

The engine's own builder runs each RUN step in a short-lived container, under the engine's
default runtime (``build_limits`` says what that leaves open). Limits are set per build:
memory and swap, a CPU quota, a pids cgroup as the steps' parent where the host allows
(``cgroups``), and a watch on what the build writes. The network is the egress bridge of
the operator's policy (``open`` or ``web``, under the host's egress rules: inter-container traffic off, the host,
its LAN and cloud metadata unreachable) or none at all. The HTTP stream is read in a worker thread; stopping a build
(cancel, time or disk limit, shutdown) shuts the request side of that stream, which makes the
engine cancel the build (kill the running step, remove its containers), and the stream is read
until the engine ends it: a step that finished as the build was cancelled is committed all the
same, and its layer is reported there, so nothing is removed while the engine still works and no
layer escapes the list. The layers the build committed are reported as they appear and removed
(newest first, only when untagged and unused) if the build does not finish.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from docker import utils as docker_utils

from ...errors import BuildFailed
from ..building import BuildSpec, ImageRef
from .build_cleanup import cleanup_sync
from .build_limits import DISK_POLL_S, DiskMeter, disk_exceeded, failure_hint
from .build_stream import Job, Parser
from .cgroups import BuildCgroup
from .engine import DockerEngine, docker_errors

__all__ = ["read_dockerfile", "run_build"]

_FROM_HINT = (
    "FROM images must exist on this host (no registry is pulled from): use agenthost/base:bookworm, "
    "agenthost/python:bookworm or agenthost/node:bookworm, or an image a previous build made"
)
_MAX_DOCKERFILE = 1024 * 1024
_STOP_GRACE_S = 60.0  # for the engine to end a build it was told to stop, before the stream is cut


def _dockerignore(context: Path) -> list[str] | None:
    path = context / ".dockerignore"
    if path.is_symlink() or not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def read_dockerfile(context: Path, dockerfile: str) -> str:
    """The Dockerfile's text, never through a symlink (the checkout is the tenant's; we are root).

    A relative path must stay inside ``context``; an absolute one is a file the platform wrote.
    Raises: BuildFailed.
    """
    path = os.path.abspath(dockerfile if os.path.isabs(dockerfile) else os.path.join(context, dockerfile))
    real = os.path.realpath(path)
    inside = os.path.isabs(dockerfile) or real.startswith(os.path.realpath(context) + os.sep)
    if not inside or real != os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)):
        raise BuildFailed(f"the Dockerfile {dockerfile!r} is a symlink", "make the Dockerfile a regular file")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BuildFailed(
            f"cannot read the Dockerfile {dockerfile!r}: {exc.strerror}", "check the dockerfile path"
        ) from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BuildFailed(f"the Dockerfile {dockerfile!r} is not a regular file")
        return f.read(_MAX_DOCKERFILE).decode("utf-8", "replace")


def _prepare(context: Path, dockerfile: str, labels: dict[str, str]) -> tuple[Any, str, dict[str, str]]:
    """The context as a tar (temp file), the Dockerfile's name in it, and the labels left for the engine.

    The labels go into one LABEL line appended to a copy of the Dockerfile (the engine's labels
    parameter would add one build step, one container, per label); the copy travels in the tar.
    """
    text = read_dockerfile(context, dockerfile).rstrip()
    if labels and not text.endswith(("\\", "`")):  # a dangling line continuation would swallow the line
        text += "\nLABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "\n"
        labels = {}
    name = f".agenthost.{os.urandom(8).hex()}.Dockerfile"
    tar = docker_utils.tar(str(context), exclude=_dockerignore(context), dockerfile=(name, text), gzip=False)
    return tar, name, labels


async def run_build(engine: DockerEngine, spec: BuildSpec, cgroup: BuildCgroup | None) -> ImageRef:
    """``docker build`` of ``spec`` with its steps under ``cgroup`` (the pids limit), when there is one.

    Raises: BuildFailed with the engine's message, past the time limit or over the disk limit;
    cancellation stops it."""
    tag, memory_mb, cpus, disk_mb, on_log = spec.tag, spec.memory_mb, spec.cpus, spec.disk_mb, spec.on_log

    def prepare() -> Job:
        # RUN steps get the rules of services: the host, its LAN and metadata out of reach.
        mode = "none" if spec.network == "none" else engine.ensure_egress_sync(spec.network)
        tar, name, engine_labels = _prepare(spec.context, spec.dockerfile, spec.labels)
        params: dict[str, Any] = {
            "t": tag,
            "dockerfile": name,
            "rm": True,
            "forcerm": True,
            "pull": False,
            "networkmode": mode,
            "memory": memory_mb * 1024 * 1024,
            "memswap": memory_mb * 1024 * 1024,
            "cpuperiod": 100_000,
            "cpuquota": max(1000, int(cpus * 100_000)),
            "labels": json.dumps(engine_labels),
        }
        if cgroup is not None:
            params["cgroupparent"] = cgroup.parent
        return Job(engine.client().api, params, tar)

    job = await engine.run("prepare build context", prepare)
    parser = Parser()
    meter = DiskMeter(engine.client().api)
    reported: list[str] = []
    wake = [anyio.Event()]
    committed = anyio.Event()
    over: list[int] = []

    def sink(chunk: dict[str, Any]) -> None:  # runs on the event loop, called from the worker
        parser.feed(chunk)
        wake[0].set()

    async def drain() -> None:
        lines, parser.new_lines = parser.new_lines, []
        for line in lines:
            await on_log(line)
        for layer in parser.layers[len(reported) :]:
            reported.append(layer)
            committed.set()
            if spec.on_layer is not None:
                await spec.on_layer(layer)

    async def forward() -> None:
        while True:
            await wake[0].wait()
            wake[0] = anyio.Event()
            await drain()

    async def written(running: bool) -> int:
        return await engine.run("measure a build's writes", meter.measure, parser.containers, parser.layers, running)

    async def watch_disk(limit: int) -> None:
        nonlocal committed
        while True:
            with anyio.move_on_after(DISK_POLL_S):
                await committed.wait()  # a new layer is measured at once
            committed = anyio.Event()
            if (used := await written(True)) > limit:
                over.append(used)
                await _halt(job)
                return

    def work() -> None:
        with docker_errors(f"build {tag}"):
            job.run(sink)

    failure: list[Exception] = []
    try:
        with anyio.fail_after(spec.timeout_s):
            async with anyio.create_task_group() as tg:
                tg.start_soon(forward)
                if disk_mb is not None:
                    tg.start_soon(watch_disk, disk_mb * 1024 * 1024)
                try:
                    await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
                except Exception as exc:  # raised below, not wrapped in the task group's ExceptionGroup
                    failure.append(exc)
                tg.cancel_scope.cancel()
            parser.flush()
            await drain()
            if disk_mb is not None and not over and not failure:  # the last step's layer, committed since
                used = await written(False)
                if used > disk_mb * 1024 * 1024:
                    over.append(used)
            if disk_mb is not None and over:
                raise disk_exceeded(disk_mb, over[0])
        if failure:
            raise failure[0]
    except TimeoutError:
        with anyio.CancelScope(shield=True):
            await _stop(engine, job, parser, drain, cgroup)
        raise BuildFailed(
            f"build exceeded its time limit of {int(spec.timeout_s)} s",
            "make the build faster, or pass a larger timeout_s (the operator's build_timeout_s is the most)",
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _stop(engine, job, parser, drain, cgroup)
        raise
    if parser.error is not None or parser.image_id is None:
        with anyio.CancelScope(shield=True):
            await _stop(engine, job, parser, drain, cgroup)
        message = parser.error or "the engine finished the build without an image"
        hint = failure_hint(memory_mb, cpus, cgroup.limit if cgroup is not None else None, disk_mb)
        if "pull access denied" in message or "repository does not exist" in message:
            hint = _FROM_HINT
        raise BuildFailed(f"the Dockerfile failed: {message}", hint)

    def inspect() -> ImageRef:
        attrs = engine.client().api.inspect_image(tag)
        exposed = (attrs.get("Config") or {}).get("ExposedPorts") or {}
        ports = sorted(int(k.split("/")[0]) for k in exposed if k.endswith("/tcp"))
        return ImageRef(tag=tag, digest=parser.image_id, size_bytes=int(attrs.get("Size", 0)), ports=ports)

    return await engine.run(f"inspect image {tag}", inspect)


async def _halt(job: Job) -> None:
    """Tell the engine to stop the build and wait until it has (its stream ended); past a bound, cut it."""
    job.abort()
    if not await anyio.to_thread.run_sync(job.finished.wait, _STOP_GRACE_S):
        job.kill()
        await anyio.to_thread.run_sync(job.finished.wait, 10.0)


async def _stop(
    engine: DockerEngine, job: Job, parser: Parser, drain: Callable[[], Awaitable[None]], cgroup: BuildCgroup | None
) -> None:
    """Stop the build, report what the engine said until it was done, then remove what the build made."""
    await _halt(job)
    parser.flush()
    await drain()
    with anyio.move_on_after(60):
        parent = cgroup.parent if cgroup is not None and not job.ended else None
        await engine.run("clean up after a build", cleanup_sync, engine.client(), parser, parent)
