"""Exec in a running container: stdin, a deadline, bounded and streamed output, and a kill inside the container.

Runs in a worker thread (the docker SDK is synchronous) and talks to the engine's hijacked exec
socket directly: stdin is written only when the socket can take it, so a command that never reads
its input cannot stall the deadline; output is read to the end and bounded (see ``exec_output``).
The command runs inside the shared wrapper (``exec_wrapper``: env and stdin both arrive on the exec's
stdin, never on argv), except a program with no input, which the engine starts itself with the env set on
the exec (``runs_unwrapped``). On the deadline, or when the caller goes away, the command and everything it
spawned are killed *inside* the container by the shared killer: closing the engine's exec session alone
would leave them running. The killer's own exec is read with a deadline, so a crashed sandbox never hangs
a call.

An exec can also be started ahead of its command (``prepared``: the wrapper's prepared form waiting on its
stdin); the next command then runs in it (``exec_sync(prepared=...)``) with no engine call before its output, as
long as it is still waiting and the command fits (``prepared_request``); otherwise the prepared exec is closed and
the command goes through the engine's exec as usual.

When the container dies under runsc (its sandbox crashed, or it was killed), the engine keeps the exec's
stream open until the deadline, even after the container was restarted. So the wait also watches the
container: once it stops or restarts, the exec is lost and the result has no exit status (and is not
``timed_out``) within about a second. An exec that did end is lost too when its container died meanwhile:
runsc then ends it with exit 128 and its own error as output, which is not the command's.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import docker.errors

from ..base import ExecResult
from ..exec_output import BoundedOutput, OutputStreamer
from ..exec_wrapper import check_workdir, killed_count, killer_argv, prepared_request, runs_unwrapped, wrap
from .prepared import PreparedExec

__all__ = ["Emit", "exec_sync", "kill_exec"]

log = logging.getLogger(__name__)

Emit = Callable[[str, str], None]  # (stream name, new text)
_STREAMS = {1: "stdout", 2: "stderr"}
# runsc's exit status for an exec whose sandbox died, and how long the engine may take to see the death.
_SANDBOX_DIED = 128
_NOT_STARTED = 126
# How the engine's own error begins when it could not start an exec's process: held back from the progress
# stream of a direct exec, which then runs again through the wrapper.
_ENGINE_ERROR = b"OCI runtime exec failed"
_DEATH_GRACE_S = 3.0
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


def _seen_dead_soon(watch: _ContainerWatch) -> bool:
    """Whether the engine says within a few seconds that the container died. runsc ends an exec with exit
    128 as its sandbox dies, which can be before the engine marks the container stopped (seen in CI). A
    command that really exits 128 pays that wait."""
    until = time.monotonic() + _DEATH_GRACE_S
    while time.monotonic() < until:
        time.sleep(0.1)
        if watch.gone(now=True):
            return True
    return False


def _exit_state(api: Any, exec_id: str) -> tuple[int | None, bool]:
    """The exec's exit status, and whether the engine never started its process (no pid: no such program or
    workdir, which the engine reports as exit 126 with its own error on the stream)."""
    # The stream can end a moment before the engine marks the exec finished.
    deadline = time.monotonic() + 2.0
    while True:
        try:
            state = api.exec_inspect(exec_id)
        except docker.errors.NotFound:
            return None, False  # gone with its container
        if not state.get("Running"):
            code = state.get("ExitCode")
            return (int(code) if code is not None else None), state.get("Pid") == 0
        if time.monotonic() > deadline:
            return None, False
        time.sleep(0.01)


class _ContainerWatch:
    """Whether the container instance an exec began in has stopped or been replaced (restarted) since."""

    def __init__(self, api: Any, container: str, every_s: float = 1.0) -> None:
        self._api, self._container, self._every = api, container, every_s
        self._started = self._started_at()
        self._next = time.monotonic() + every_s

    def _started_at(self) -> str | None:
        try:
            state = self._api.inspect_container(self._container)["State"]
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError:
            return self._started  # the engine did not answer this time: no news
        return str(state.get("StartedAt")) if state.get("Running") else None

    def gone(self, now: bool = False) -> bool:
        if not now and time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self._every
        return self._started_at() != self._started


def _bind(emit: Emit | None, stream: str) -> Callable[[str], None] | None:
    if emit is None:
        return None
    return lambda text: emit(stream, text)


class _Demux:
    """Splits the engine's multiplexed stream (8-byte header: stream id, size) into stdout and stderr. With
    ``ack`` (a prepared exec's), stdout must begin with it, and nothing before it is the command's output: any
    other output first means the exec did not take the request (``refused``)."""

    def __init__(
        self, outputs: dict[int, BoundedOutput], streamers: dict[int, OutputStreamer], ack: bytes = b""
    ) -> None:
        self._buf = bytearray()
        self._outputs = outputs
        self._streamers = streamers
        self.first = b""  # the first payload, on either stream
        self.ack = ack  # what is still awaited of it
        self.refused = False

    def _past_ack(self, stream: int, payload: bytes) -> bytes:
        """What of ``payload`` is the command's, once the ack is through."""
        if self.refused or not self.ack:
            return b"" if self.refused else payload
        n = min(len(self.ack), len(payload))
        if stream != 1 or payload[:n] != self.ack[:n]:
            self.refused, self.ack = True, b""
            return b""
        self.ack = self.ack[n:]
        return payload[n:]

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        buf, pos = self._buf, 0
        while len(buf) - pos >= 8:
            stream, size = struct.unpack_from(">BxxxL", buf, pos)
            if len(buf) - pos - 8 < size:
                break
            payload = self._past_ack(stream, bytes(buf[pos + 8 : pos + 8 + size]))
            pos += 8 + size
            if not payload:
                continue
            self.first = self.first or payload
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
        except ConnectionResetError:
            return True  # ended with input unread (a killed prepared exec's request)
        if not chunk:
            return True
        demux.feed(chunk)
    return False


def kill_exec(api: Any, container: str, exec_key: str, timeout_s: float = 20.0) -> int:
    """Kill the exec's processes inside the container; returns how many were killed (-1: no answer in time)."""
    killer = api.exec_create(container, killer_argv(exec_key))["Id"]
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
    return killed_count(out.text())


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
    prepared: PreparedExec | None = None,
) -> ExecResult:
    """Run ``argv`` in ``container`` (a name or id), in ``prepared`` when it still waits and can take the command
    (it is used or closed either way).

    A program with no input is started by the engine itself, with the env, the marker and the workdir set on
    the exec (``runs_unwrapped``). Everything else, and a program the engine could not start, goes through
    the wrapper, which also says in its own words that a program or a workdir is missing.

    Raises: InvalidInput when ``workdir`` does not exist, or for an env the wrapper refuses.
    """
    wrapped = wrap(argv, stdin, env, workdir)
    started = time.monotonic()
    bounds = (max_output_bytes, emit, cancel)
    result = None
    if prepared is not None:
        request = prepared_request(wrapped)
        if request is not None:
            result = _run(
                api, container, prepared.key, [], {}, request[0], timeout_s, *bounds, started=prepared, ack=request[1]
            )
        else:
            prepared.close()
    if result is None and runs_unwrapped(argv, stdin):
        options: dict[str, Any] = {"environment": {**(env or {}), **wrapped.env}, "workdir": workdir}
        left = timeout_s - (time.monotonic() - started)
        result = _run(api, container, wrapped.key, argv, options, None, left, *bounds, direct=True)
    if result is None:
        left = timeout_s - (time.monotonic() - started)
        options = {"stdin": wrapped.stdin is not None, "environment": wrapped.env}
        result = _run(api, container, wrapped.key, wrapped.argv, options, wrapped.stdin, left, *bounds)
        assert result is not None
    check_workdir(result.exit_code, len(result.stdout), result.stderr, workdir)
    return result.model_copy(update={"duration_ms": int((time.monotonic() - started) * 1000)})


def _run(
    api: Any,
    container: str,
    key: str,
    argv: list[str],
    options: dict[str, Any],
    stdin: bytes | None,
    timeout_s: float,
    max_output_bytes: int,
    emit: Emit | None,
    cancel: threading.Event | None,
    direct: bool = False,
    started: PreparedExec | None = None,
    ack: bytes = b"",
) -> ExecResult | None:
    """One exec of ``argv`` (the wrapped command, or with ``direct`` the command itself): ``options`` go to
    exec_create, ``stdin`` is its whole input, ``key`` names it to the killer; with ``started``, that exec is
    already running, ``stdin`` is its request and ``ack`` what it writes first once it took it. None when
    ``direct`` and the engine could not start the program, or when ``started`` did not take the request (it
    ended or wrote something else first): the command never ran, and nothing was streamed. A prepared exec still
    silent at the deadline is killed like any other and the result says it timed out."""
    began = time.monotonic()
    watch = _ContainerWatch(api, container)
    if started is None:
        exec_id = api.exec_create(container, argv, **options)["Id"]
        sock = api.exec_start(exec_id, socket=True)
    else:
        exec_id, sock = started.exec_id, started.sock
    raw = _raw_socket(sock)
    outputs = {1: BoundedOutput(max_output_bytes), 2: BoundedOutput(max_output_bytes)}
    streamers = {n: OutputStreamer(_bind(emit, name)) for n, name in _STREAMS.items()}
    demux = _Demux(outputs, streamers, ack)
    pending = memoryview(stdin or b"")
    stdin_open = stdin is not None
    timed_out = cancelled = lost = False
    try:
        raw.setblocking(False)
        demux.feed(_read_ahead(sock))
        deadline = began + timeout_s
        while not demux.refused:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if watch.gone():
                lost = True  # its processes died with the container; nothing is left to kill
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
                except ConnectionResetError:
                    chunk = b""  # the exec ended with input unread
                if chunk == b"":
                    break
                if chunk:
                    demux.feed(chunk)
            if not (direct and demux.first.startswith(_ENGINE_ERROR)):
                for streamer in streamers.values():
                    streamer.flush()
        if demux.refused or (demux.ack and not (timed_out or cancelled)):
            # A prepared exec that ended, or wrote something else, before it took the request: whatever it runs is
            # not the command, which never started (the wrapper acknowledges before it runs it). One that was
            # merely slow to answer is not given up this way: the command may be running, and it would run twice.
            if not lost and kill_exec(api, container, key) < 0:
                log.warning("prepared exec %s in %s: the killer did not answer in time", key, container)
            _pump(raw, _Demux({}, {}), time.monotonic() + 5.0)
            return None
        exit_code, never_started = None, False
        if not (timed_out or cancelled or lost):
            exit_code, never_started = _exit_state(api, exec_id)
            # A status under 128 is the command's own; a signal's, runsc's 128 or none may be the container's death.
            if (exit_code is None or exit_code >= 128) and watch.gone(now=True):
                lost, exit_code = True, None  # it ended because the container died (runsc: "WaitPID failed: EOF")
        if exit_code == _SANDBOX_DIED and _seen_dead_soon(watch):
            lost, exit_code = True, None
        if direct and never_started and exit_code == _NOT_STARTED:
            return None
        if timed_out or cancelled:
            # Kill first, then let the engine end the exec on its own before the stream is closed.
            if kill_exec(api, container, key) < 0:
                log.warning("exec %s in %s: the killer did not answer in time", key, container)
            _pump(raw, _Demux({}, {}), time.monotonic() + 5.0)
    finally:
        raw.close()
    for streamer in streamers.values():
        streamer.flush(force=True)
    return ExecResult(
        exit_code=exit_code,
        stdout=outputs[1].text(),
        stderr=outputs[2].text(),
        truncated=outputs[1].truncated or outputs[2].truncated,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - began) * 1000),
    )
