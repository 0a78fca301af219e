"""A container's logs: the merged tail of both streams, and a live follow bridged out of a worker thread."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator
from datetime import UTC, datetime

from docker.models.containers import Container

from ..base import LogLine
from ..threaded import merged_from_threads
from .containers import parse_ts

__all__ = ["after_tail", "follow_logs", "merged_tail", "read_stream"]

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


def follow_logs(get_container: Callable[[], Container | None], since: datetime | None) -> AsyncIterator[LogLine]:
    """New lines as the container writes them, until the caller stops iterating or the container ends."""

    def lines() -> Generator[LogLine, None, None]:
        container = get_container()
        if container is None:
            return
        stream = container.logs(stream=True, follow=True, timestamps=True, since=since)
        try:
            for chunk in stream:
                for line in chunk.decode("utf-8", "replace").splitlines():
                    ts, _, text = line.partition(" ")
                    yield LogLine(ts=parse_ts(ts), text=text)
        finally:
            stream.close()

    return merged_from_threads([lines])


async def after_tail(
    followed: AsyncIterator[LogLine], tail: list[LogLine], since: datetime | None
) -> AsyncIterator[LogLine]:
    """The followed lines that the tail did not already give and that are not before ``since``: the engine
    takes ``since`` in whole seconds, inclusive, so a follow replays up to a second of older lines."""
    start = tail[-1].ts if tail else since
    shown = Counter((ln.ts, ln.text) for ln in tail if ln.ts is not None and ln.ts == start)
    async for line in followed:
        if start is not None and line.ts is not None:
            if line.ts < start:
                continue
            if shown[(line.ts, line.text)] > 0:
                shown[(line.ts, line.text)] -= 1
                continue
        yield line
