"""Request counters from the proxy: what reached a service's routes in the last ``WINDOW_S`` seconds.

Caddy attributes each request itself, when it handles it: its HTTPS server maps every routed host (a service's
own and its tenant's verified domains, with and without the HTTPS port, as a Host header carries it) to a
logger named after the service's id (``logger_names``), and skips every unmapped host (the 404 page). Each
service's logger writes to a file of its own, ``<data_dir>/ingress/access/<service id>.log`` (root only,
never mounted into a workload), with only the time, status and duration of each request (the filter encoder
drops the request, its headers and the client's address), rolled at ``ROLL_MB`` with one older file kept:
at most ``2 * ROLL_MB`` per service, and the files of a service that lost its route are removed (``prune``).

Any agenthost process on the data dir reads them (``read_traffic``): the end of the newest file first,
until an entry older than the window. A Host header Caddy's matcher folds (other letter case) reaches the
route but is not counted; a request is never counted for a service it did not reach.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..settings import Settings

__all__ = ["WINDOW_S", "Traffic", "access_dir", "access_logging", "prune", "read_traffic", "summarize"]

WINDOW_S = 300
ROLL_MB = 5
# Entries are written when a request ends, from many goroutines: a little out of order near the window's edge.
_SLACK_S = 30.0
_QUIET_S = 60.0
_LOGGER = "http.log.access."
_DROPPED = ("request", "resp_headers", "user_id", "size")


class Traffic(BaseModel):
    """Requests that reached its routes in the last window_s seconds (counted from since)."""

    window_s: int
    requests: int
    errors_5xx: int
    p50_ms: float | None = None
    # Later than window_s ago when the service's older entries rolled off (a busy service).
    since: datetime


def access_dir(settings: Settings) -> Path:
    return settings.ingress_dir / "access"


def _logger(service_id: str) -> str:
    return f"svc-{service_id}"


def access_logging(settings: Settings, hosts: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """For ``hosts`` (host name, service id): the HTTPS server's ``logs`` and Caddy's ``logging`` section."""
    port = settings.ingress_https_port
    names: dict[str, str] = {}
    services: set[str] = set()
    for host, service_id in hosts:
        if not service_id:
            continue
        names[host] = names[f"{host}:{port}"] = _logger(service_id)
        services.add(service_id)
    directory = access_dir(settings)
    logs: dict[str, Any] = {"default": {"exclude": [_LOGGER.rstrip(".")]}}
    for service_id in sorted(services):
        logs[_logger(service_id)] = {
            "writer": {
                "output": "file",
                "filename": str(directory / f"{service_id}.log"),
                "roll_size_mb": ROLL_MB,
                "roll_keep": 1,
                "roll_gzip": False,
            },
            "encoder": {
                "format": "filter",
                # Each line only {"ts":…,"duration":…,"status":…}: the file names the service.
                "wrap": {"format": "json", "message_key": "", "level_key": "", "name_key": ""},
                "fields": {name: {"filter": "delete"} for name in _DROPPED},
            },
            "include": [_LOGGER + _logger(service_id)],
        }
    return {"logger_names": names, "skip_unmapped_hosts": True}, {"logs": logs}


def _files(directory: Path, service_id: str) -> list[Path]:
    """The service's log files, newest first: the current one, then the rolled one (named by its time)."""
    current = directory / f"{service_id}.log"
    rolled = sorted(directory.glob(f"{service_id}-*.log"), reverse=True)
    return ([current] if current.exists() else []) + rolled


def _entries(data: bytes) -> Iterator[tuple[float, int, float]]:
    """(time, status, duration in seconds) of each complete entry, the newest first."""
    for line in reversed(data.split(b"\n")):
        try:
            entry = json.loads(line)
            yield float(entry["ts"]), int(entry["status"]), float(entry["duration"])
        except (ValueError, KeyError, TypeError):
            continue  # the line Caddy is writing right now, or an empty one


def summarize(entries: Iterable[tuple[float, int, float]], now: float, since: float | None = None) -> Traffic:
    """Counters over the entries of the window ending at ``now`` (``since``: where the record starts, when it
    starts later than the window)."""
    start = now - WINDOW_S
    inside = [(status, duration) for ts, status, duration in entries if start <= ts <= now]
    durations = [duration for _, duration in inside]
    return Traffic(
        window_s=WINDOW_S,
        requests=len(inside),
        errors_5xx=sum(1 for status, _ in inside if status >= 500),
        p50_ms=round(statistics.median(durations) * 1000, 3) if durations else None,
        since=datetime.fromtimestamp(max(start, since or start), UTC),
    )


def read_traffic(settings: Settings, service_id: str, now: float) -> Traffic:
    """The service's counters for the window ending at ``now``, from its files (none yet: all zero)."""
    start = now - WINDOW_S
    files = _files(access_dir(settings), service_id)
    got: list[tuple[float, int, float]] = []
    oldest: float | None = None
    complete = False
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # rolled, or pruned, while we read
            continue
        for entry in _entries(data):
            if entry[0] < start - _SLACK_S:
                complete = True
                break
            got.append(entry)
            oldest = entry[0]
        if complete:
            break
    # Every file read to its start, and one older than them rolled away: the record starts at its oldest entry.
    truncated = not complete and len(files) > 1 and oldest is not None
    return summarize(got, now, oldest if truncated else None)


def prune(settings: Settings, routed: set[str], now: float) -> int:
    """Remove the files of services that have no route any more; returns how many.

    A file written in the last ``_QUIET_S`` seconds stays: ``routed`` was read from the store a moment ago, and
    a service created since may already be logging (Caddy would go on writing to a removed file)."""
    directory = access_dir(settings)
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        path = directory / name
        if not name.endswith(".log") or name.removesuffix(".log").split("-", 1)[0] in routed:
            continue
        try:
            if path.stat().st_mtime > now - _QUIET_S:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed
