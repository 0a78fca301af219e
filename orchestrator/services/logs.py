"""A service's logs: the last lines, pages after a cursor, the previous instance's output, and following.

A cursor is the engine's timestamp of the last line given and how many lines with that very timestamp
were given, so a page resumes exactly after it. Only a backend whose lines carry timestamps can do this
(Docker; Nomad keeps none): there ``cursor``, ``previous`` and ``follow`` are ``not_supported``.

"Previous" is the output of the container's runs before its last (re)start. On Docker a crashed service is
restarted in the same container, which keeps its whole log, so those are its lines older than the current
run's start. A redeploy (update_service, set_env) or start_service after a failure makes a new container,
whose log starts empty: no previous output survives that.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime

import anyio

from ..backends.base import Backend, LogLine
from ..errors import InvalidInput, NotSupported
from ..models import ServiceRecord, untrusted
from ..progress import Reporter
from ..secrets import mask_secrets
from ..settings import Settings
from ..store import TenantStore
from .models import LogOutput
from .requests import logs_since

__all__ = ["LogQuery", "ServiceLogs", "format_cursor", "parse_cursor"]

# Lines read from the engine for one page or the previous instance's output.
_SCAN = 5000
_NO_TIMESTAMPS = "this backend keeps no timestamps of log lines (Nomad), so it cannot page, follow or split runs"


def format_cursor(ts: datetime, same: int) -> str:
    return f"{ts.astimezone(UTC).isoformat(timespec='microseconds')}~{same}"


def parse_cursor(cursor: str) -> tuple[datetime, int]:
    """Raises: InvalidInput for anything service_logs did not hand out."""
    stamp, _, same = cursor.rpartition("~")
    try:
        ts, n = datetime.fromisoformat(stamp), int(same)
    except ValueError:
        ts, n = None, -1
    if ts is None or ts.tzinfo is None or not 0 <= n <= _SCAN:
        raise InvalidInput(
            "cursor is not one service_logs returned", "pass next_cursor from an earlier answer, or omit it"
        )
    return ts, n


class LogQuery:
    """Which lines: the last ``tail`` (newer than ``since_s`` seconds ago), a page after ``cursor``, or the
    previous run's; and whether to follow new ones."""

    def __init__(
        self, tail: int, since_s: int | None, cursor: str | None = None, previous: bool = False, follow: bool = False
    ) -> None:
        if (since_s is not None) + (cursor is not None) + previous > 1:
            raise InvalidInput("pass at most one of since, cursor and previous", "they select lines differently")
        if previous and follow:
            raise InvalidInput("previous output cannot be followed", "call without follow")
        self.tail, self.since_s, self.follow, self.previous = tail, since_s, follow, previous
        self.cursor = parse_cursor(cursor) if cursor is not None else None


def _stamped(lines: list[LogLine]) -> list[LogLine]:
    if any(ln.ts is None for ln in lines):
        raise NotSupported(_NO_TIMESTAMPS, "use tail (and since) without cursor, previous or follow")
    return lines


def _after(lines: list[LogLine], cursor: tuple[datetime, int]) -> list[LogLine]:
    """The lines after the cursor: newer than its timestamp, less the ``same`` first ones at it."""
    ts, same = cursor
    out = []
    for ln in lines:
        assert ln.ts is not None
        if ln.ts < ts:
            continue
        if ln.ts == ts and same > 0:
            same -= 1
            continue
        out.append(ln)
    return out


def _cursor_after(lines: list[LogLine], given: tuple[datetime, int] | None) -> str | None:
    """The cursor just after the last of ``lines`` (which follow ``given``, when there was one)."""
    if not lines or lines[-1].ts is None:
        return format_cursor(*given) if given else None
    last = lines[-1].ts
    same = sum(1 for ln in lines if ln.ts == last)
    if given is not None and given[0] == last:
        same += given[1]
    return format_cursor(last, same)


class ServiceLogs:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        secrets: Callable[[TenantStore, ServiceRecord], Awaitable[list[str]]],
    ) -> None:
        self.settings = settings
        self.backend = backend
        self._secrets = secrets  # values to mask (ServiceManager.known_secrets)

    async def _read(self, rec: ServiceRecord, tail: int, since: datetime | None = None) -> list[LogLine]:
        return [ln async for ln in self.backend.logs(rec.id, tail=tail, since=since)]

    async def read(self, ts: TenantStore, rec: ServiceRecord, q: LogQuery, report: Reporter) -> LogOutput:
        """Raises: InvalidInput; NotSupported where lines have no timestamps and the query needs them."""
        secrets = await self._secrets(ts, rec)
        oldest_first = False
        if q.previous:
            st = await self.backend.workload_status(rec.id)
            if not st.restarts or st.started_at is None:
                raise InvalidInput(
                    f"service {rec.name}'s container has not restarted, so it has no previous run's output",
                    "call without previous; a redeploy or start_service after a failure starts a new log",
                )
            started = st.started_at
            lines = [ln for ln in _stamped(await self._read(rec, _SCAN)) if ln.ts is not None and ln.ts < started]
        elif q.cursor is not None:
            lines = _after(_stamped(await self._read(rec, _SCAN, q.cursor[0])), q.cursor)
            oldest_first = True
        else:
            lines = await self._read(rec, q.tail, logs_since(q.since_s, time.time()))
        cut = len(lines) > q.tail
        lines = lines[: q.tail] if oldest_first else lines[-q.tail :]
        kept, cut_bytes = self._bounded(lines, secrets, oldest_first)
        cursor = _cursor_after(kept, q.cursor) if oldest_first else _cursor_after(lines, None)
        if q.follow:
            _stamped(lines)
            start = parse_cursor(cursor) if cursor else (datetime.now(UTC), 0)
            followed = await self._follow(rec, start, secrets, report)
            # The page and what followed it are one run of lines: a page after a cursor keeps its oldest, so
            # its next_cursor leaves nothing out; a tail keeps the newest.
            kept, more_cut = self._bounded(kept + followed, secrets, oldest_first)
            cut_bytes = cut_bytes or more_cut
            if oldest_first:
                cursor = _cursor_after(kept, q.cursor)
            else:
                cursor = _cursor_after(followed, start) if followed else format_cursor(*start)
        text = mask_secrets("\n".join(ln.text for ln in kept), secrets)
        return LogOutput(
            service=rec.name, lines=len(kept), truncated=cut or cut_bytes, output=untrusted(text), next_cursor=cursor
        )

    def _bounded(self, lines: list[LogLine], secrets: list[str], oldest_first: bool) -> tuple[list[LogLine], bool]:
        """As many lines as fit in log_max_bytes: the oldest when paging forward, else the newest."""
        budget = self.settings.log_max_bytes
        order = lines if oldest_first else list(reversed(lines))
        kept: list[LogLine] = []
        for ln in order:
            budget -= len(mask_secrets(ln.text, secrets).encode()) + 1
            if budget < 0:
                break
            kept.append(ln)
        return (kept if oldest_first else list(reversed(kept))), len(kept) < len(lines)

    async def _follow(
        self, rec: ServiceRecord, start: tuple[datetime, int], secrets: list[str], report: Reporter
    ) -> list[LogLine]:
        """New lines as progress messages until the container ends, wait_timeout_s passes, or log_max_bytes
        of them were sent."""
        budget_s, budget_bytes = self.settings.wait_timeout_s, self.settings.log_max_bytes
        began = time.monotonic()
        got: list[LogLine] = []
        with anyio.move_on_after(budget_s):
            stream: AsyncIterator[LogLine] = self.backend.logs(rec.id, tail=_SCAN, since=start[0], follow=True)
            async with aclosing(stream) as lines:  # type: ignore[type-var]
                pending = start[1]
                async for ln in lines:
                    if ln.ts is None:
                        raise NotSupported(_NO_TIMESTAMPS, "use tail without follow")
                    if ln.ts < start[0]:
                        continue
                    if ln.ts == start[0] and pending > 0:
                        pending -= 1  # given before the cursor
                        continue
                    text = mask_secrets(ln.text, secrets)
                    got.append(ln)
                    await report(text, time.monotonic() - began, budget_s)
                    budget_bytes -= len(text.encode()) + 1
                    if budget_bytes <= 0:
                        break
        return got
