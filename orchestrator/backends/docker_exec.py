"""Exec in a running container: stdin, a deadline, bounded output, and a kill inside the container on timeout.

The command runs under a tiny ``sh`` wrapper that records its pid in the container's /tmp,
so a timed-out command and everything it spawned can be killed *inside* the container
(killing the engine's exec client would leave the process running).
"""

from __future__ import annotations

import select
import socket
import struct
import time
import uuid
from typing import Any

from .base import ExecResult

__all__ = ["exec_sync"]

_WRAPPER = 'echo $$ > "/tmp/.ah-exec-$AH_EXEC_ID"; exec "$@"'
# Kill the recorded pid and its descendants (found by walking /proc ppid links), then remove the pid file.
_KILLER = (
    'f="/tmp/.ah-exec-$1"; [ -f "$f" ] || exit 0; root=$(cat "$f"); '
    'tree() { echo "$1"; for s in /proc/[0-9]*/stat; do '
    'read -r p _ _ pp _ < "$s" 2>/dev/null || continue; [ "$pp" = "$1" ] && tree "$p"; done; }; '
    'kill -9 $(tree "$root") 2>/dev/null; rm -f "$f"'
)


def _raw_socket(sock: Any) -> socket.socket:
    return sock._sock if hasattr(sock, "_sock") else sock  # type: ignore[no-any-return]


def _exit_code(api: Any, exec_id: str) -> int | None:
    # The stream can end a moment before the engine marks the exec finished.
    for _ in range(50):
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            code = state.get("ExitCode")
            return int(code) if code is not None else None
        time.sleep(0.02)
    return None


def exec_sync(
    api: Any,
    container_id: str,
    argv: list[str],
    timeout_s: float,
    stdin: bytes | None,
    env: dict[str, str] | None,
    workdir: str | None,
    max_output_bytes: int,
) -> ExecResult:
    exec_key = uuid.uuid4().hex[:12]
    started = time.monotonic()
    exec_id = api.exec_create(
        container_id,
        ["/bin/sh", "-c", _WRAPPER, "ah-exec", *argv],
        stdin=stdin is not None,
        environment={**(env or {}), "AH_EXEC_ID": exec_key},
        workdir=workdir,
    )["Id"]
    raw = _raw_socket(api.exec_start(exec_id, socket=True))
    out = {1: bytearray(), 2: bytearray()}
    truncated = timed_out = False
    try:
        if stdin is not None:
            raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
        buffer = b""
        deadline = started + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([raw], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = raw.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 8:
                stream, size = struct.unpack(">BxxxL", buffer[:8])
                if len(buffer) < 8 + size:
                    break
                payload, buffer = buffer[8 : 8 + size], buffer[8 + size :]
                target = out.get(stream)
                if target is None:
                    continue
                room = max_output_bytes - len(target)
                if len(payload) > room:
                    truncated = True
                target += payload[: max(room, 0)]
    finally:
        raw.close()
    if timed_out:
        killer = api.exec_create(container_id, ["/bin/sh", "-c", _KILLER, "ah-kill", exec_key])["Id"]
        api.exec_start(killer)
    else:
        cleanup = api.exec_create(container_id, ["rm", "-f", f"/tmp/.ah-exec-{exec_key}"])["Id"]
        api.exec_start(cleanup, detach=True)
    exit_code = None if timed_out else _exit_code(api, exec_id)
    return ExecResult(
        exit_code=exit_code,
        stdout=out[1].decode("utf-8", "replace"),
        stderr=out[2].decode("utf-8", "replace"),
        truncated=truncated,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
