"""The Docker backend's follow after a tail: the engine's whole-second, inclusive ``since`` replays lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.backends.base import LogLine
from orchestrator.backends.docker.logs import after_tail

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def at(ms: int, text: str, stream: str = "stdout") -> LogLine:
    return LogLine(ts=T0 + timedelta(milliseconds=ms), stream=stream, text=text)


async def replay(lines: list[LogLine]) -> AsyncIterator[LogLine]:
    for line in lines:
        yield line


async def test_lines_the_tail_gave_and_older_ones_are_not_repeated() -> None:
    tail = [at(400, "out 2"), at(400, "err 2", "stderr")]
    # What the engine sends for since=12:00:00 (whole second): everything from the start of that second.
    followed = [
        at(0, "out 1"),
        at(1, "err 1", "stderr"),
        at(400, "out 2"),
        at(400, "err 2", "stderr"),
        at(600, "out 3"),
    ]
    got = [ln.text async for ln in after_tail(replay(followed), tail, None)]
    assert got == ["out 3"]


async def test_a_new_line_with_the_same_time_as_the_last_tailed_one_is_kept() -> None:
    tail = [at(400, "same")]
    followed = [at(400, "same"), at(400, "same"), at(401, "next")]
    got = [ln.text async for ln in after_tail(replay(followed), tail, None)]
    assert got == ["same", "next"]


async def test_without_a_tail_lines_before_since_are_dropped() -> None:
    followed = [at(100, "before"), at(500, "at"), at(900, "after")]
    got = [ln.text async for ln in after_tail(replay(followed), [], T0 + timedelta(milliseconds=500))]
    assert got == ["at", "after"]
    everything = [ln.text async for ln in after_tail(replay(followed), [], None)]
    assert everything == ["before", "at", "after"]
