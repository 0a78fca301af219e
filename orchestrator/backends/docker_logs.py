"""A container's logs: the merged tail of both streams, and a live follow bridged out of a worker thread."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import anyio
from docker.models.containers import Container

from .base import LogLine
from .docker_containers import parse_ts

__all__ = ["follow_logs", "merged_tail", "read_stream"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_stream(container: Container, stdout: bool, tail: int, since: datetime | None) -> list[LogLine]:
    """The last ``tail`` lines of stdout (or stderr), with the engine's timestamps (sync)."""
    raw = container.logs(stdout=stdout, stderr=not stdout, timestamps=True, tail=tail, since=since)
    lines = []
    for line in raw.decode("utf-8", "replace").splitlines():
        ts, _, text = line.partition(" ")
        lines.append(LogLine(ts=parse_ts(ts), stream="stdout" if stdout else "stderr", text=text))
    return lines


def merged_tail(stdout: list[LogLine], stderr: list[LogLine], tail: int) -> list[LogLine]:
    merged = stdout + stderr
    merged.sort(key=lambda ln: ln.ts or _EPOCH)
    return merged[-tail:]


async def follow_logs(get_container: Callable[[], Container | None], since: datetime | None) -> AsyncIterator[LogLine]:
    """New lines as the container writes them, until the caller stops iterating or the container ends."""
    send, receive = anyio.create_memory_object_stream[LogLine](256)
    stop = anyio.Event()

    def pump() -> None:
        container = get_container()
        if container is None:
            return
        stream = container.logs(stream=True, follow=True, timestamps=True, since=since)
        try:
            for chunk in stream:
                if stop.is_set():
                    break
                for line in chunk.decode("utf-8", "replace").splitlines():
                    ts, _, text = line.partition(" ")
                    anyio.from_thread.run(send.send, LogLine(ts=parse_ts(ts), text=text))
        finally:
            stream.close()
            anyio.from_thread.run(send.aclose)

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(anyio.to_thread.run_sync, pump, abandon_on_cancel=True))
        try:
            async with receive:
                async for line in receive:
                    yield line
        finally:
            stop.set()
            tg.cancel_scope.cancel()
