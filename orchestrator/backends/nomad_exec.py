"""Exec in a running allocation over Nomad's websocket exec API (``/v1/client/allocation/<id>/exec``).

Frames are JSON: we send ``{"stdin": {"data": b64}}``, ``{"stdin": {"close": true}}`` and empty
heartbeats; Nomad sends ``{"stdout"|"stderr": {"data": b64}}`` and finally
``{"exited": true, "result": {"exit_code": N}}``. Nomad's exec takes no env or workdir, so a tiny
``sh`` wrapper applies them and records the command's pid, so that a timed-out command and its
children are killed *inside* the task (dropping the socket would leave them running).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
from httpx2.websockets import HTTPXWSException, WebSocketDisconnect

from ..errors import BackendUnavailable, InvalidInput
from .base import ExecResult, OnOutput
from .exec_output import OutputStreamer

__all__ = ["exec_in_alloc", "run_in_alloc"]

_WRAPPER = 'echo $$ > "/tmp/.ah-exec-$1"; shift; if [ -n "$1" ]; then cd "$1" || exit 126; fi; shift; exec "$@"'
_KILLER = (
    'f="/tmp/.ah-exec-$1"; [ -f "$f" ] || exit 0; root=$(cat "$f"); '
    'tree() { echo "$1"; for s in /proc/[0-9]*/stat; do '
    'read -r p _ _ pp _ < "$s" 2>/dev/null || continue; [ "$pp" = "$1" ] && tree "$p"; done; }; '
    'kill -9 $(tree "$root") 2>/dev/null; rm -f "$f"'
)
_HEARTBEAT_S = 10.0
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


def _headers(token: str | None) -> dict[str, str]:
    return {"X-Nomad-Token": token} if token else {}


async def run_in_alloc(
    url_for: Any,
    token: str | None,
    argv: list[str],
    *,
    timeout_s: float,
    stdin: bytes | None = None,
    max_output_bytes: int = 1024 * 1024,
    on_output: Any = None,
) -> ExecResult:
    """Run argv as is; ``url_for(argv)`` gives the websocket URL. ``on_output(stream, bytes)`` sees output live.

    Raises: BackendUnavailable when the websocket cannot be opened.
    """
    started = time.monotonic()
    out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = timed_out = False
    exit_code: int | None = None
    try:
        async with httpx2.AsyncClient(headers=_headers(token), timeout=30) as client:
            async with client.websocket(
                url_for(argv), max_message_size_bytes=4 * 1024 * 1024, keepalive_ping_interval_seconds=None
            ) as ws:
                if stdin:
                    for i in range(0, len(stdin), _CHUNK):
                        data = base64.b64encode(stdin[i : i + _CHUNK]).decode()
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
                    except WebSocketDisconnect:
                        break
                    if frame.get("exited"):
                        exit_code = int((frame.get("result") or {}).get("exit_code", 0))
                        break
                    for stream in ("stdout", "stderr"):
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
    except Exception as exc:  # the websocket session wraps failures in exception groups
        leaf = _leaf(exc)
        if not isinstance(leaf, (HTTPXWSException, httpx2.HTTPError, OSError)):
            raise
        if exit_code is None and not timed_out and not out["stdout"] and not out["stderr"]:
            raise BackendUnavailable(f"exec via Nomad failed: {_describe(leaf)}") from exc
    return ExecResult(
        exit_code=None if timed_out else exit_code,
        stdout=out["stdout"].decode("utf-8", "replace"),
        stderr=out["stderr"].decode("utf-8", "replace"),
        truncated=truncated,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _throttled(on_output: OnOutput | None) -> Callable[[str, bytes], Awaitable[None]] | None:
    """Live output in batches (at most one per stream every half second), as the Docker backend sends it."""
    if on_output is None:
        return None
    callback = on_output
    pending: list[tuple[str, str]] = []

    def sink(name: str) -> Callable[[str], None]:
        return lambda text: pending.append((name, text))

    streamers = {name: OutputStreamer(sink(name)) for name in _STREAMS}

    async def feed(stream: str, chunk: bytes) -> None:
        streamers[stream].add(chunk)
        streamers[stream].flush()
        while pending:
            await callback(*pending.pop(0))

    return feed


async def exec_in_alloc(
    url_for: Any,
    token: str | None,
    argv: list[str],
    timeout_s: float,
    stdin: bytes | None,
    env: dict[str, str] | None,
    workdir: str | None,
    max_output_bytes: int,
    on_output: OnOutput | None = None,
) -> ExecResult:
    """The protocol's exec: env and workdir applied, killed inside the task on timeout."""
    if not argv:
        raise InvalidInput("command is empty", "pass an argv list or a shell string")
    key = uuid.uuid4().hex[:12]
    env_prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    wrapped = ["/bin/sh", "-c", _WRAPPER, "ah-exec", key, workdir or "", *env_prefix, *argv]
    result = await run_in_alloc(
        url_for,
        token,
        wrapped,
        timeout_s=timeout_s,
        stdin=stdin,
        max_output_bytes=max_output_bytes,
        on_output=_throttled(on_output),
    )
    # No exit status and no deadline: the session was lost (the task restarted, or Nomad dropped the
    # stream) and the command may still run: kill it as on a timeout.
    lost = result.timed_out or result.exit_code is None
    cleanup = [_KILLER if lost else 'rm -f "/tmp/.ah-exec-$1"']
    with anyio.CancelScope(shield=True), anyio.move_on_after(30):
        await run_in_alloc(url_for, token, ["/bin/sh", "-c", *cleanup, "ah-kill", key], timeout_s=20)
    return result
