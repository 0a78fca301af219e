"""An interactive exec in an allocation (an SSH session) over Nomad's websocket exec API.

The frames are those of ``exec``: ``{"stdin": {"data": b64}}`` and ``{"stdin": {"close": true}}``; Nomad
answers with stdout/stderr frames and finally ``{"exited": true, "result": {"exit_code": N}}``. Empty
frames keep an idle session alive. Nomad's own tty exec is not used (under runsc it gives none): a PTY is
made inside the task (``exec_wrapper.session_wrap``) and a resize is a short exec beside the session.
Cancelled, the shared killer ends the command and everything it started inside the task.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import anyio
import httpx2
from anyio.abc import ObjectReceiveStream
from httpx2.websockets import HTTPXWSException, WebSocketDisconnect

from ...errors import BackendUnavailable
from ..base import OnBytes, SessionInput, SessionSpec
from ..exec_wrapper import resize_argv, session_wrap
from .api import Access
from .exec import _STREAMS, Gone, _client, _describe, _every, _kill, _leaf, _until_gone, run_in_alloc

__all__ = ["session_in_alloc"]

log = logging.getLogger(__name__)

_HEARTBEAT_S = 10.0
_CHUNK = 32 * 1024


async def session_in_alloc(
    url_for: Any,
    access: Access | None,
    spec: SessionSpec,
    stdin: ObjectReceiveStream[SessionInput],
    on_output: OnBytes,
    gone: Gone | None = None,
) -> int | None:
    """The protocol's ``session``; ``url_for(argv)`` gives the websocket URL.

    Raises: BackendUnavailable when the websocket cannot be opened."""
    wrapped = session_wrap(spec.argv, spec.term if spec.tty else None, spec.size)
    lost: list[bool] = []
    exit_code: int | None = None
    opened = False
    lock = anyio.Lock()

    async def send(ws: Any, frame: dict[str, Any]) -> None:
        async with lock:
            await ws.send_text(json.dumps(frame))

    async def resize(cols: int, rows: int) -> None:
        try:
            await run_in_alloc(url_for, access, resize_argv(wrapped.key, cols, rows), timeout_s=10)
        except BackendUnavailable as exc:  # the session may have ended meanwhile
            log.debug("session resize: %s", exc)

    async def write(ws: Any) -> None:
        async for item in stdin:
            if item is None:
                await send(ws, {"stdin": {"close": True}})
            elif isinstance(item, tuple):
                await resize(*item)
            else:
                for i in range(0, len(item), _CHUNK):
                    await send(ws, {"stdin": {"data": base64.b64encode(item[i : i + _CHUNK]).decode()}})

    try:
        async with _client(access) as client:
            async with (
                client.websocket(
                    url_for(wrapped.argv),
                    max_message_size_bytes=4 * 1024 * 1024,
                    keepalive_ping_interval_seconds=None,
                ) as ws,
                anyio.create_task_group() as tg,
            ):
                opened = True
                tg.start_soon(write, ws)
                tg.start_soon(_every, _HEARTBEAT_S, lambda: send(ws, {}))
                if gone is not None:
                    tg.start_soon(_until_gone, gone, tg.cancel_scope, lost)
                while True:
                    try:
                        frame = json.loads(await ws.receive_text())
                    except WebSocketDisconnect as exc:
                        log.warning("session closed by Nomad before an exit status: %s %s", exc.code, exc.reason)
                        lost.append(True)
                        break
                    if frame.get("exited"):
                        exit_code = int((frame.get("result") or {}).get("exit_code", 0))
                        break
                    for stream in _STREAMS:
                        op = frame.get(stream)
                        if op and op.get("data"):
                            await on_output(stream, base64.b64decode(op["data"]))
                tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        await _kill(url_for, access, wrapped.key)
        raise
    except Exception as exc:  # the websocket session wraps failures in exception groups
        leaf = _leaf(exc)
        if not isinstance(leaf, (HTTPXWSException, httpx2.HTTPError, OSError)):
            raise
        if not opened:
            raise BackendUnavailable(f"session via Nomad failed: {_describe(leaf)}") from exc
        lost.append(True)
    if lost and not (gone is not None and await gone()):
        await _kill(url_for, access, wrapped.key)  # Nomad dropped it: it may still run
    return None if lost else exit_code
