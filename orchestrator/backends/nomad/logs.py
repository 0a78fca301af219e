"""Logs from an allocation (``/v1/client/fs/logs/<alloc>``): the tail of stdout and stderr, and a live follow;
and the output of the platform's own batch jobs, which their tasks write to files (``read_output``).

Nomad keeps task output as plain files without per-line timestamps, so lines carry no ``ts``
and stdout comes before stderr; ``since`` is honoured exactly when it predates the allocation
(every line is newer) and refused otherwise rather than answered wrongly.

Nomad 1.6's docker driver stops its log collector as soon as a container exits, so the logs of a
task that writes and exits at once can end early or be empty. The batch jobs' tasks therefore
redirect their streams to ``local/ah-stdout`` and ``local/ah-stderr`` in their own directory
(``nomad/oneshot.nomad.hcl``, ``nomad/volume.nomad.hcl``), complete once the task is dead.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Generator
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ...errors import InvalidInput, NotFound
from ..base import LogLine
from ..threaded import merged_from_threads
from .jobs import TASK

if TYPE_CHECKING:
    from .api import NomadApi

__all__ = ["check_since", "follow_logs", "read_output", "read_tail"]

Stream = Literal["stdout", "stderr"]
_BYTES_PER_LINE = 512  # how far back to read for a tail of N lines (bounded below)


def check_since(since: datetime | None, alloc_created: datetime) -> None:
    if since is not None and since > alloc_created:
        raise InvalidInput(
            "the Nomad backend cannot select log lines by time within one allocation (Nomad keeps no timestamps)",
            "use tail instead of since",
        )


def read_tail(api: NomadApi, alloc_id: str, stream: Stream, tail: int, task: str = TASK) -> list[LogLine]:
    """The last ``tail`` lines of one stream (sync; run it in a worker thread)."""
    offset = max(64 * 1024, tail * _BYTES_PER_LINE)
    try:
        raw = api.get_text(
            "client",
            "fs",
            "logs",
            alloc_id,
            params={"task": task, "type": stream, "origin": "end", "offset": offset, "plain": "true"},
        )
    except NotFound:
        return []  # the task has not written this stream yet
    return _last_lines(raw, len(raw) >= offset, stream, tail)


def read_output(api: NomadApi, alloc_id: str, stream: Stream, tail: int, task: str = TASK) -> list[LogLine]:
    """The last ``tail`` lines a platform batch job's task wrote to ``stream``, from its file (sync)."""
    path = f"{task}/local/ah-{stream}"
    try:
        size = int(api.get("client", "fs", "stat", alloc_id, params={"path": path})["Size"])
    except NotFound:
        return []  # the task never started, or its shell could not open the file
    if size == 0:
        return []
    offset = max(0, size - max(64 * 1024, tail * _BYTES_PER_LINE))
    params = {"path": path, "offset": offset, "limit": size - offset}
    raw = api.get_text("client", "fs", "readat", alloc_id, params=params)
    return _last_lines(raw, offset > 0, stream, tail)


def _last_lines(raw: bytes, cut: bool, stream: Stream, tail: int) -> list[LogLine]:
    lines = raw.decode("utf-8", "replace").splitlines()
    if cut and lines:
        lines = lines[1:]  # the first line was cut by the offset
    return [LogLine(stream=stream, text=text) for text in lines[-tail:]]


def follow_logs(api: NomadApi, alloc_id: str) -> AsyncIterator[LogLine]:
    """New output of both streams as it arrives, until the caller stops iterating or both streams end."""

    def lines(stream: Stream) -> Generator[LogLine, None, None]:
        response = api.stream(
            "client",
            "fs",
            "logs",
            alloc_id,
            params={"task": TASK, "type": stream, "origin": "end", "offset": 0, "follow": "true", "plain": "true"},
        )
        buffer = b""
        try:
            for chunk in response.iter_content(chunk_size=None):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    yield LogLine(stream=stream, text=line.decode("utf-8", "replace"))
        finally:
            response.close()

    return merged_from_threads([functools.partial(lines, "stdout"), functools.partial(lines, "stderr")])
