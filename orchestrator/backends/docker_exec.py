"""Exec in a running container: stdin, a deadline, bounded and streamed output, and a kill inside the container.

Runs in a worker thread (the docker SDK is synchronous) and talks to the engine's hijacked exec
socket directly: stdin is written only when the socket can take it, so a command that never reads
its input cannot stall the deadline; output is read to the end and bounded (see ``exec_output``).
On the deadline, or when the caller goes away, the command and everything it spawned are killed
*inside* the container: closing the engine's exec session alone would leave them running.

Known engine fault: Debian's runsc 20221219 now and then crashes a whole sandbox (the container exits
with code 2) after several exec'd process trees were killed in it. The platform's original exec shows it
too, so the kill stays gentle: SIGKILL once per round, at most three rounds, a pause between them.
The killer's own exec is read with a deadline, so a crashed sandbox never hangs a call.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput
from .base import ExecResult
from .exec_output import EXEC_MARKER, KILLER, WORKDIR_MISSING, WRAPPER, BoundedOutput, OutputStreamer

__all__ = ["Emit", "exec_sync", "kill_exec"]

log = logging.getLogger(__name__)

Emit = Callable[[str, str], None]  # (stream name, new text)
_STREAMS = {1: "stdout", 2: "stderr"}
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _raw_socket(sock: Any) -> socket.socket:
    return sock._sock if hasattr(sock, "_sock") else sock  # type: ignore[no-any-return]


def _read_ahead(sock: Any) -> bytes:
    """Output the HTTP client buffered together with the response headers, before we took over the socket."""
    fp = getattr(getattr(getattr(getattr(sock, "_response", None), "raw", None), "_fp", None), "fp", None)
    if fp is None or not hasattr(fp, "peek"):
        return b""
    data: bytes = fp.peek(0)  # the socket is non-blocking by now: this never waits for new data
    if data:
        fp.read(len(data))
    return data


def _exit_code(api: Any, exec_id: str) -> int | None:
    # The stream can end a moment before the engine marks the exec finished.
    deadline = time.monotonic() + 2.0
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            code = state.get("ExitCode")
            return int(code) if code is not None else None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def _bind(emit: Emit | None, stream: str) -> Callable[[str], None] | None:
    if emit is None:
        return None
    return lambda text: emit(stream, text)


class _Demux:
    """Splits the engine's multiplexed stream (8-byte header: stream id, size) into stdout and stderr."""

    def __init__(self, outputs: dict[int, BoundedOutput], streamers: dict[int, OutputStreamer]) -> None:
        self._buf = bytearray()
        self._outputs = outputs
        self._streamers = streamers

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        buf, pos = self._buf, 0
        while len(buf) - pos >= 8:
            stream, size = struct.unpack_from(">BxxxL", buf, pos)
            if len(buf) - pos - 8 < size:
                break
            payload = bytes(buf[pos + 8 : pos + 8 + size])
            pos += 8 + size
            if stream in self._outputs:
                self._outputs[stream].add(payload)
                self._streamers[stream].add(payload)
        del buf[:pos]


def _pump(raw: socket.socket, demux: _Demux, deadline: float) -> bool:
    """Read a (non-blocking) exec stream until it ends or the deadline passes; True when it ended."""
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([raw], [], [], min(remaining, 0.25))
        if not readable:
            continue
        try:
            chunk = raw.recv(262144)
        except _WOULD_BLOCK:
            continue
        if not chunk:
            return True
        demux.feed(chunk)
    return False


def kill_exec(api: Any, container: str, exec_key: str, timeout_s: float = 20.0) -> int:
    """Kill the exec's processes inside the container; returns how many were killed (-1: no answer in time)."""
    killer = api.exec_create(container, ["/bin/sh", "-c", KILLER, "ah-kill", exec_key])["Id"]
    sock = api.exec_start(killer, socket=True)
    raw = _raw_socket(sock)
    out = BoundedOutput(4096)
    demux = _Demux({1: out}, {1: OutputStreamer(None)})
    try:
        raw.setblocking(False)
        demux.feed(_read_ahead(sock))
        if not _pump(raw, demux, time.monotonic() + timeout_s):
            return -1
    finally:
        raw.close()
    try:
        return int(out.text().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def exec_sync(
    api: Any,
    container: str,
    argv: list[str],
    timeout_s: float,
    stdin: bytes | None,
    env: dict[str, str] | None,
    workdir: str | None,
    max_output_bytes: int,
    emit: Emit | None = None,
    cancel: threading.Event | None = None,
) -> ExecResult:
    """Run ``argv`` in ``container`` (a name or id). Raises: InvalidInput when ``workdir`` does not exist."""
    exec_key = uuid.uuid4().hex[:16]
    started = time.monotonic()
    exec_id = api.exec_create(
        container,
        ["/bin/sh", "-c", WRAPPER, exec_key, "i" if stdin is not None else "n", workdir or "", *argv],
        stdin=stdin is not None,
        environment={**(env or {}), EXEC_MARKER: exec_key},
    )["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = _raw_socket(sock)
    outputs = {1: BoundedOutput(max_output_bytes), 2: BoundedOutput(max_output_bytes)}
    streamers = {n: OutputStreamer(_bind(emit, name)) for n, name in _STREAMS.items()}
    demux = _Demux(outputs, streamers)
    pending = memoryview(stdin or b"")
    stdin_open = stdin is not None
    timed_out = cancelled = False
    try:
        raw.setblocking(False)
        demux.feed(_read_ahead(sock))
        deadline = started + timeout_s
        while True:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if stdin_open and not pending:
                raw.shutdown(socket.SHUT_WR)
                stdin_open = False
            readable, writable, _ = select.select([raw], [raw] if stdin_open else [], [], min(remaining, 0.25))
            if writable:
                try:
                    sent = raw.send(pending[:65536])
                    pending = pending[sent:]
                except _WOULD_BLOCK:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    stdin_open = False  # the command closed its input; it may still write output
                    pending = memoryview(b"")
            if readable:
                try:
                    chunk = raw.recv(262144)
                except _WOULD_BLOCK:
                    chunk = None
                if chunk == b"":
                    break
                if chunk:
                    demux.feed(chunk)
            for streamer in streamers.values():
                streamer.flush()
        if timed_out or cancelled:
            # Kill first, then let the engine end the exec on its own before the stream is closed.
            if kill_exec(api, container, exec_key) < 0:
                log.warning("exec %s in %s: the killer did not answer in time", exec_key, container)
            _pump(raw, _Demux({}, {}), time.monotonic() + 5.0)
    finally:
        raw.close()
    for streamer in streamers.values():
        streamer.flush(force=True)
    exit_code = None if timed_out or cancelled else _exit_code(api, exec_id)
    stderr = outputs[2].text()
    if exit_code == WORKDIR_MISSING and stderr.startswith("agenthost: workdir ") and not outputs[1].total:
        raise InvalidInput(f"workdir {workdir!r} does not exist in the container", "pass an existing absolute path")
    return ExecResult(
        exit_code=exit_code,
        stdout=outputs[1].text(),
        stderr=stderr,
        truncated=outputs[1].truncated or outputs[2].truncated,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
