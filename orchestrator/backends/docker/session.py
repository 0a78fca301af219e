"""An interactive exec in a container (an SSH session): stdin streamed in, output streamed out, a PTY on demand.

The engine's calls (create, start, inspect, the killer) run in worker threads; the hijacked socket itself
is read and written on the event loop (non-blocking), so an idle session holds no thread. The engine's
own TTY is not used (runsc gives none): a PTY is made inside the workload (``exec_wrapper.session_wrap``)
and a resize is a short command beside the session. The container is watched meanwhile: under runsc the
engine keeps the stream of a dead container open.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from ...errors import AgentHostError
from ..base import OnBytes, SessionInput, SessionSpec
from ..exec_wrapper import resize_argv, session_wrap
from .exec import _WOULD_BLOCK, _ContainerWatch, _exit_state, _raw_socket, _read_ahead, kill_exec

__all__ = ["run_session"]

log = logging.getLogger(__name__)

_STREAMS = {1: "stdout", 2: "stderr"}


class _Frames:
    """The engine's multiplexed stream, cut into (stream name, payload)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        self._buf += chunk
        out, pos = [], 0
        while len(self._buf) - pos >= 8:
            stream, size = struct.unpack_from(">BxxxL", self._buf, pos)
            if len(self._buf) - pos - 8 < size:
                break
            if stream in _STREAMS:
                out.append((_STREAMS[stream], bytes(self._buf[pos + 8 : pos + 8 + size])))
            pos += 8 + size
        del self._buf[:pos]
        return out


def _run_quietly(api: Any, container: str, argv: list[str]) -> None:
    """A short command beside the session (a terminal resize), read to its end."""
    sock = api.exec_start(api.exec_create(container, argv)["Id"], socket=True)
    raw = _raw_socket(sock)
    try:
        raw.settimeout(10)
        while raw.recv(4096):
            pass
    finally:
        raw.close()


async def _send(raw: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        await anyio.wait_writable(raw)
        try:
            view = view[raw.send(view) :]
        except _WOULD_BLOCK:
            continue


async def run_session(
    api: Any,
    container: str,
    spec: SessionSpec,
    stdin: ObjectReceiveStream[SessionInput],
    on_output: OnBytes,
    thread: Callable[[Callable[[], Any]], Any],
) -> int | None:
    """The protocol's ``session`` on one container; ``thread(fn)`` runs an engine call in a worker thread.

    Raises: docker errors of the create call (the backend maps them)."""
    wrapped = session_wrap(spec.argv, spec.term if spec.tty else None, spec.size)

    def start() -> tuple[str, Any, _ContainerWatch]:
        watch = _ContainerWatch(api, container, every_s=2.0)
        exec_id = api.exec_create(container, wrapped.argv, stdin=True)["Id"]
        return exec_id, api.exec_start(exec_id, socket=True), watch

    exec_id, sock, watch = await thread(start)
    raw = _raw_socket(sock)
    frames = _Frames()
    lost: list[bool] = []

    async def deliver(chunk: bytes) -> None:
        for stream, payload in frames.feed(chunk):
            await on_output(stream, payload)

    async def resize(cols: int, rows: int) -> None:
        try:
            await thread(lambda: _run_quietly(api, container, resize_argv(wrapped.key, cols, rows)))
        except AgentHostError as exc:  # the session may have ended meanwhile
            log.debug("session resize in %s: %s", container, exc)

    async def write() -> None:
        async for item in stdin:
            if item is None:
                raw.shutdown(socket.SHUT_WR)
            elif isinstance(item, tuple):
                await resize(*item)
            else:
                await _send(raw, item)

    async def watch_container(scope: anyio.CancelScope) -> None:
        while not await thread(watch.gone):
            await anyio.sleep(1.0)
        lost.append(True)
        scope.cancel()

    try:
        raw.setblocking(False)
        if first := _read_ahead(sock):
            await deliver(first)
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            tg.start_soon(watch_container, tg.cancel_scope)
            while True:
                await anyio.wait_readable(raw)
                try:
                    chunk = raw.recv(65536)
                except _WOULD_BLOCK:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                await deliver(chunk)
            tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            if await thread(lambda: kill_exec(api, container, wrapped.key)) < 0:
                log.warning("session %s in %s: the killer did not answer in time", wrapped.key, container)
        raise
    finally:
        raw.close()
    if lost:
        return None
    code: int | None = (await thread(lambda: _exit_state(api, exec_id)))[0]
    return code
