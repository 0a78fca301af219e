"""Exec in a running allocation over Nomad's websocket exec API (``/v1/client/allocation/<id>/exec``).

Frames are JSON: we send ``{"stdin": {"data": b64}}``, ``{"stdin": {"close": true}}`` and empty
heartbeats; Nomad sends ``{"stdout"|"stderr": {"data": b64}}`` and finally
``{"exited": true, "result": {"exit_code": N}}``. Nomad's exec takes no env or workdir: the command
runs inside the shared wrapper (``exec_wrapper``), which takes env and stdin from the exec's stdin and
applies the workdir; on the deadline, a cancel or a lost session the shared killer ends the command and
everything it started *inside* the task (dropping the socket would leave them running).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from httpx2.websockets import HTTPXWSException, WebSocketDisconnect

from ...errors import AgentHostError, BackendUnavailable, NotFound
from ..base import ExecResult, ExecSpec, OnOutput
from ..exec_output import OutputStreamer
from ..exec_wrapper import check_workdir, killer_argv, wrap
from .jobs import TASK

if TYPE_CHECKING:
    from .api import Access, NomadApi

__all__ = ["Gone", "exec_in_alloc", "exec_url", "run_in_alloc", "task_gone"]

log = logging.getLogger(__name__)

_HEARTBEAT_S = 10.0
_TICK_S = 0.5
_WATCH_S = 1.0
_STREAMS = ("stdout", "stderr")
_CHUNK = 32 * 1024


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return f"{response.status_code} {response.text.strip()[:500]}"
        except Exception:  # a streamed body that was not read
            return str(response.status_code)
    return str(exc) or type(exc).__name__


def exec_url(api: NomadApi, alloc_id: str) -> Callable[[list[str]], str]:
    """The websocket address that runs an argv in the main task of allocation ``alloc_id``."""

    def url(argv: list[str]) -> str:
        return api.websocket_url(
            "client", "allocation", alloc_id, "exec", params={"task": TASK, "tty": "false", "command": json.dumps(argv)}
        )

    return url


def _client(access: Access | None) -> httpx2.AsyncClient:
    """A client with the token and TLS of ``access`` (none: plain, for tests' fake servers)."""
    return access.client() if access is not None else httpx2.AsyncClient(timeout=30)


async def _every(interval_s: float, tick: Callable[[], Awaitable[None]]) -> None:
    while True:
        await anyio.sleep(interval_s)
        await tick()


# Whether the task instance an exec began in has stopped or been replaced since (True: the session is lost).
Gone = Callable[[], Awaitable[bool]]


def task_gone(inspect: Callable[[], Awaitable[dict[str, Any]]], alloc: dict[str, Any]) -> Gone:
    """Whether the task instance of ``alloc`` has stopped or been replaced since; ``inspect()`` reads the
    allocation again."""
    began = ((alloc.get("TaskStates") or {}).get(TASK) or {}).get("StartedAt")

    async def gone() -> bool:
        try:
            now = await inspect()
        except NotFound:
            return True
        except AgentHostError:
            return False  # no news this time
        state = (now.get("TaskStates") or {}).get(TASK) or {}
        running = now.get("ClientStatus") == "running" and state.get("State") == "running"
        return not running or state.get("StartedAt") != began

    return gone


async def _until_gone(gone: Gone, scope: anyio.CancelScope, lost: list[bool]) -> None:
    """Nomad usually ends the stream of a task that goes away, but not always (seen under load: the stream
    of a restarted service's exec stayed open until the deadline); so the task is watched as well."""
    while not await gone():
        await anyio.sleep(_WATCH_S)
    lost.append(True)
    scope.cancel()


async def run_in_alloc(
    url_for: Any,
    access: Access | None,
    argv: list[str],
    *,
    timeout_s: float,
    stdin: bytes | None = None,
    max_output_bytes: int = 1024 * 1024,
    on_output: Any = None,
    tick: Callable[[], Awaitable[None]] | None = None,
    gone: Gone | None = None,
) -> ExecResult:
    """Run argv as is; ``url_for(argv)`` gives the websocket URL. ``on_output(stream, bytes)`` sees output live;
    ``tick()`` is called every half second meanwhile, ``gone()`` every second. A session that ends without an
    exit status once it was opened, or whose task is gone, is lost: a result with neither an exit code nor a
    timeout.

    Raises: BackendUnavailable when the websocket cannot be opened.
    """
    started = time.monotonic()
    out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = timed_out = opened = False
    lost: list[bool] = []
    exit_code: int | None = None
    try:
        async with _client(access) as client:
            async with (
                client.websocket(
                    url_for(argv), max_message_size_bytes=4 * 1024 * 1024, keepalive_ping_interval_seconds=None
                ) as ws,
                anyio.create_task_group() as tg,
            ):
                opened = True
                if tick is not None:
                    tg.start_soon(_every, _TICK_S, tick)
                if gone is not None:
                    tg.start_soon(_until_gone, gone, tg.cancel_scope, lost)
                for i in range(0, len(stdin or b""), _CHUNK):
                    data = base64.b64encode((stdin or b"")[i : i + _CHUNK]).decode()
                    await ws.send_text(json.dumps({"stdin": {"data": data}}))
                await ws.send_text(json.dumps({"stdin": {"close": True}}))
                deadline = started + timeout_s
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        timed_out = True
                        break
                    try:
                        frame = json.loads(await ws.receive_text(timeout=min(remaining, _HEARTBEAT_S)))
                    except TimeoutError:
                        await ws.send_text("{}")
                        continue
                    except WebSocketDisconnect as exc:
                        # Nomad closes normally, with no reason, when the error it met says "closed" or "EOF".
                        log.warning("exec session closed by Nomad before an exit status: %s %s", exc.code, exc.reason)
                        break
                    if frame.get("exited"):
                        exit_code = int((frame.get("result") or {}).get("exit_code", 0))
                        break
                    for stream in _STREAMS:
                        op = frame.get(stream)
                        if not op or not op.get("data"):
                            continue
                        chunk = base64.b64decode(op["data"])
                        if on_output is not None:
                            await on_output(stream, chunk)
                        room = max_output_bytes - len(out[stream])
                        if len(chunk) > room:
                            truncated = True
                        out[stream] += chunk[: max(room, 0)]
                tg.cancel_scope.cancel()
    except Exception as exc:  # the websocket session wraps failures in exception groups
        leaf = _leaf(exc)
        if not isinstance(leaf, (HTTPXWSException, httpx2.HTTPError, OSError)):
            raise
        # Once open, Nomad ends a session whose task went away with a close frame or by dropping the
        # connection, as it happens: either way the session was lost, the engine is not unreachable.
        if not opened:
            raise BackendUnavailable(f"exec via Nomad failed: {_describe(leaf)}") from exc
    return ExecResult(
        exit_code=None if timed_out or lost else exit_code,
        stdout=out["stdout"].decode("utf-8", "replace"),
        stderr=out["stderr"].decode("utf-8", "replace"),
        truncated=truncated,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


class _LiveOutput:
    """Live output in batches (at most one per stream every half second), as the Docker backend sends it:
    ``feed`` takes new output, ``tick`` hands on what waited for its half second while no new output came."""

    def __init__(self, callback: OnOutput) -> None:
        self._callback = callback
        self._pending: list[tuple[str, str]] = []
        self._lock = anyio.Lock()
        self._streamers = {name: OutputStreamer(self._sink(name)) for name in _STREAMS}

    def _sink(self, name: str) -> Callable[[str], None]:
        return lambda text: self._pending.append((name, text))

    async def feed(self, stream: str, chunk: bytes) -> None:
        self._streamers[stream].add(chunk)
        await self.tick()

    async def tick(self, force: bool = False) -> None:
        async with self._lock:  # the ticker and the reader both hand output on, one batch at a time, in order
            for streamer in self._streamers.values():
                streamer.flush(force)
            while self._pending:
                await self._callback(*self._pending.pop(0))


async def _kill(url_for: Any, access: Access | None, key: str) -> None:
    """Run the shared killer for exec ``key``; shielded, so a cancelled caller still has its command killed."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(30) as waited:
        try:
            await run_in_alloc(url_for, access, killer_argv(key), timeout_s=20)
        except BackendUnavailable as exc:
            log.warning("exec %s: the killer could not run: %s", key, exc)
    if waited.cancelled_caught:
        log.warning("exec %s: the killer did not answer in time", key)


async def exec_in_alloc(url_for: Any, access: Access | None, spec: ExecSpec, gone: Gone | None = None) -> ExecResult:
    """The protocol's exec: env, stdin and workdir applied by the wrapper, killed inside the task on timeout.
    ``gone``: whether the task it runs in has stopped or restarted since (then the session is lost).

    Raises: InvalidInput when the workdir does not exist or the env is refused; BackendUnavailable.
    """
    wrapped = wrap(spec.argv, spec.stdin, spec.env, spec.workdir)
    live = _LiveOutput(spec.on_output) if spec.on_output is not None else None
    try:
        result = await run_in_alloc(
            url_for,
            access,
            wrapped.argv_with_env,  # alloc exec takes no environment
            timeout_s=spec.timeout_s,
            stdin=wrapped.stdin,
            max_output_bytes=spec.max_output_bytes,
            on_output=live.feed if live is not None else None,
            tick=live.tick if live is not None else None,
            gone=gone,
        )
    except anyio.get_cancelled_exc_class():
        await _kill(url_for, access, wrapped.key)
        raise
    if live is not None:
        await live.tick(force=True)
    # No exit status and no deadline: the session was lost. When its task is gone, so is the command;
    # otherwise (Nomad dropped the stream) it may still run: kill it as on a timeout.
    if result.timed_out or (result.exit_code is None and not (gone is not None and await gone())):
        await _kill(url_for, access, wrapped.key)
    check_workdir(result.exit_code, len(result.stdout), result.stderr, spec.workdir)
    return result
