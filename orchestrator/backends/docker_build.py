"""``docker build`` of a prepared context: limits, network policy, live log, and nothing left behind.

The engine's own builder runs each RUN step in a short-lived container. Limits are set per
build (memory and swap, a CPU quota); the network is the egress bridge of the operator's
policy (``open`` or ``web``: inter-container traffic off and the host itself unreachable) or
none at all. The HTTP stream is read in a worker thread; stopping a build (cancel, time
limit, shutdown) shuts that stream's socket, which makes the engine abort the step and remove
its container. The layers the build committed are reported as they appear and removed
(newest first, only when untagged and unused) if the build does not finish.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import docker.errors
from docker import utils as docker_utils

from ..errors import AgentHostError, BuildFailed
from ..models import Egress
from .base import ImageRef, OnLayer, OnLog
from .docker_containers import docker_errors
from .docker_net import ensure_egress_rules, iptables_available

if TYPE_CHECKING:
    from .docker import DockerBackend

__all__ = ["build_image_sync", "push_image_sync", "remove_layers_sync"]

_LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")
_RUNNING = re.compile(r"^ ---> Running in ([0-9a-f]{12})$")
_FROM_HINT = (
    "FROM images must exist on this host (no registry is pulled from): use agenthost/base:bookworm, "
    "agenthost/python:bookworm or agenthost/node:bookworm, or an image a previous build made"
)


class _Stopped(Exception):
    """The build's stream was shut on purpose."""


class _Job:
    """One build request: read in a worker thread, parsed on the event loop."""

    def __init__(self, api: Any, params: dict[str, Any], context: Any) -> None:
        self.api = api
        self.params = params
        self.context = context
        self.finished = threading.Event()
        self.stop = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def abort(self) -> None:
        with self._lock:
            self.stop.set()
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def run(self, sink: Callable[[dict[str, Any]], None]) -> None:
        try:
            if self.stop.is_set():
                raise _Stopped
            resp = self.api._post(
                self.api._url("/build"),
                data=self.context,
                params=self.params,
                headers={"Content-Type": "application/tar"},
                stream=True,
                timeout=None,
            )
            try:
                self.api._raise_for_status(resp)
            except docker.errors.APIError as exc:
                if exc.status_code is not None and exc.status_code < 500:  # e.g. a Dockerfile parse error
                    raise BuildFailed(f"the Dockerfile failed: {exc.explanation}") from exc
                raise
            raw = self.api._get_raw_response_socket(resp)
            with self._lock:
                self._sock = getattr(raw, "_sock", raw)
                if self.stop.is_set():
                    raise _Stopped
            try:
                for chunk in self.api._stream_helper(resp, decode=True):
                    anyio.from_thread.run_sync(sink, chunk)
            except Exception:
                if self.stop.is_set():
                    raise _Stopped from None
                raise
            finally:
                resp.close()
        finally:
            self.context.close()
            self.finished.set()


class _Parser:
    """Turns the engine's JSON stream into log lines, the layer ids this build made, and its outcome."""

    def __init__(self) -> None:
        self.buffer = ""
        self.new_lines: list[str] = []
        self.layers: list[str] = []
        self.containers: list[str] = []
        self.error: str | None = None
        self.image_id: str | None = None
        self._from_step = False
        self._cached = False

    def feed(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            self.error = str(chunk.get("error") or "build failed").strip()
            self.new_lines.append(self.error)
        if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
            self.image_id = str(chunk["aux"]["ID"])
        text = chunk.get("stream")
        if text is None and chunk.get("status") and not chunk.get("progressDetail"):
            text = f"{chunk['status']}\n"
        if not text:
            return
        self.buffer += str(text)
        *complete, self.buffer = self.buffer.split("\n")
        for line in complete:
            self._line(line)

    def flush(self) -> None:
        if self.buffer:
            self._line(self.buffer)
            self.buffer = ""

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        self.new_lines.append(line)
        if line.startswith("Step "):
            instruction = line.partition(" : ")[2].lstrip().upper()
            self._from_step = instruction.startswith("FROM ")
            self._cached = False
        elif line == " ---> Using cache":
            self._cached = True
        elif m := _RUNNING.match(line):
            self.containers.append(m.group(1))
        elif m := _LAYER.match(line):
            # The layer of a FROM step is the base image, a cached one belongs to an earlier build.
            if not self._from_step and not self._cached:
                self.layers.append(m.group(1))


def _dockerignore(context: Path) -> list[str] | None:
    path = context / ".dockerignore"
    if path.is_symlink() or not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _prepare(context: Path, dockerfile: str, labels: dict[str, str]) -> tuple[Any, str, dict[str, str]]:
    """The context as a tar (temp file), the Dockerfile's name in it, and the labels left for the engine.

    The labels go into one LABEL line appended to a copy of the Dockerfile (the engine's labels
    parameter would add one build step, one container, per label); the copy travels in the tar.
    """
    path = Path(dockerfile) if os.path.isabs(dockerfile) else context / dockerfile
    try:
        text = path.read_text(errors="replace").rstrip()
    except OSError as exc:
        raise BuildFailed(
            f"cannot read the Dockerfile {dockerfile!r}: {exc.strerror}", "check the dockerfile path"
        ) from exc
    if labels and not text.endswith(("\\", "`")):  # a dangling line continuation would swallow the line
        text += "\nLABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "\n"
        labels = {}
    name = f".agenthost.{os.urandom(8).hex()}.Dockerfile"
    tar = docker_utils.tar(str(context), exclude=_dockerignore(context), dockerfile=(name, text), gzip=False)
    return tar, name, labels


async def build_image_sync(
    backend: DockerBackend,
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
    """Raises: BuildFailed with the engine's message or when the time limit passes; cancellation stops it."""

    def prepare() -> _Job:
        mode = "none"
        if network != "none":
            # Also for 'open': the rules keep the host itself (control plane, registry) out of reach.
            if iptables_available() and not backend._egress_ready:
                try:
                    ensure_egress_rules()
                except subprocess.CalledProcessError as exc:
                    raise AgentHostError(f"could not install egress rules: {exc.stderr!r}") from exc
                backend._egress_ready = True
            mode = backend._ensure_egress_sync(network)
        tar, name, engine_labels = _prepare(context, dockerfile, labels or {})
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
        return _Job(backend._docker().api, params, tar)

    job = await backend._run("prepare build context", prepare)
    parser = _Parser()
    reported: list[str] = []
    wake = [anyio.Event()]

    def sink(chunk: dict[str, Any]) -> None:  # runs on the event loop, called from the worker
        parser.feed(chunk)
        wake[0].set()

    async def drain() -> None:
        lines, parser.new_lines = parser.new_lines, []
        for line in lines:
            await on_log(line)
        for layer in parser.layers[len(reported) :]:
            reported.append(layer)
            if on_layer is not None:
                await on_layer(layer)

    async def forward() -> None:
        while True:
            await wake[0].wait()
            wake[0] = anyio.Event()
            await drain()

    def work() -> None:
        with docker_errors(f"build {tag}"):
            job.run(sink)

    failure: list[Exception] = []
    try:
        with anyio.fail_after(timeout_s):
            async with anyio.create_task_group() as tg:
                tg.start_soon(forward)
                try:
                    await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
                except Exception as exc:  # raised below, not wrapped in the task group's ExceptionGroup
                    failure.append(exc)
                tg.cancel_scope.cancel()
        parser.flush()
        await drain()
        if failure:
            raise failure[0]
    except TimeoutError:
        with anyio.CancelScope(shield=True):
            await drain()
            await _stop(backend, job, parser)
        raise BuildFailed(
            f"build exceeded its time limit of {int(timeout_s)} s",
            "make the build faster, or pass a larger timeout_s (the operator's build_timeout_s is the most)",
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _stop(backend, job, parser)
        raise
    if parser.error is not None or parser.image_id is None:
        with anyio.CancelScope(shield=True):
            await _stop(backend, job, parser)
        message = parser.error or "the engine finished the build without an image"
        hint = _FROM_HINT if "pull access denied" in message or "repository does not exist" in message else None
        raise BuildFailed(f"the Dockerfile failed: {message}", hint)

    def inspect() -> ImageRef:
        attrs = backend._docker().api.inspect_image(tag)
        exposed = (attrs.get("Config") or {}).get("ExposedPorts") or {}
        ports = sorted(int(k.split("/")[0]) for k in exposed if k.endswith("/tcp"))
        return ImageRef(tag=tag, digest=parser.image_id, size_bytes=int(attrs.get("Size", 0)), ports=ports)

    return await backend._run(f"inspect image {tag}", inspect)


async def _stop(backend: DockerBackend, job: _Job, parser: _Parser) -> None:
    """Abort the stream, wait for the worker, then remove the step containers and layers the build made."""
    job.abort()
    with anyio.move_on_after(60):
        await anyio.to_thread.run_sync(job.finished.wait, 60.0)

    def cleanup() -> None:
        client = backend._docker()
        for cid in parser.containers:
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # the engine is removing it already
                    raise
        remove_layers_sync(backend, parser.layers)

    with anyio.move_on_after(60):
        await backend._run("clean up after a build", cleanup)


def remove_layers_sync(backend: DockerBackend, layers: list[str]) -> list[str]:
    """Remove build layers newest first; a tagged one, or one another image builds on, stays."""
    client = backend._docker()
    removed = []
    for layer in reversed(layers):
        try:
            if client.api.inspect_image(layer).get("RepoTags"):
                continue
            client.api.remove_image(layer, force=False, noprune=True)
            removed.append(layer)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
    return removed


async def push_image_sync(backend: DockerBackend, tag: str, on_log: OnLog) -> str | None:
    """Push ``tag`` to the registry its name starts with. Returns the registry's digest.

    Raises: BuildFailed when the registry refuses or cannot be reached.
    """
    repository, _, version = tag.rpartition(":")
    digest: list[str] = []
    lines: list[str] = []

    def push() -> None:
        try:
            for chunk in backend._docker().api.push(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    raise BuildFailed(
                        f"pushing to the registry failed: {str(chunk['error']).strip()}",
                        "an operator must check the local registry (infra/registry.sh) and the 'registry' setting",
                    )
                aux = chunk.get("aux") or {}
                if "Digest" in aux:
                    digest.append(str(aux["Digest"]))
                if chunk.get("status") and not chunk.get("progressDetail") and not chunk.get("id"):
                    lines.append(str(chunk["status"]))
        except docker.errors.APIError as exc:
            raise BuildFailed(f"pushing to the registry failed: {exc.explanation}") from exc

    def work() -> None:
        with docker_errors(f"push {tag}"):
            push()

    try:
        await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    finally:
        for line in lines:
            await on_log(line)
    if not digest:
        raise AgentHostError(f"the registry did not confirm the push of {tag}")
    return digest[-1]
