"""The event log: deploys, crashes with their exit code, the circuit breaker, the reconciler's repairs,
builds, backups, restores and sandboxes, each with its time and cause (``list_events``).

The use-cases record events where things happen; each gets this one ``EventLog`` at construction
(``platform.py``). Rows are tenant-scoped in the store, expire after ``event_retention_days`` (a
housekeeping pass) and are capped at ``events_per_tenant`` per tenant (at each insert). Ids grow
monotonically and are never reused, so a reader keeps its place with a cursor: ``list_events`` pages
backwards with ``before``, and ``watch`` follows forwards (MCP resource subscriptions). An event
recorded in another process on the same data dir is seen at the next poll of ``watch``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from typing import cast, get_args

import anyio
from pydantic import BaseModel

from .errors import AgentHostError, Forbidden, InvalidInput
from .models import Event, EventKind, EventType, Principal
from .settings import Settings
from .store import Store, TenantStore, audit_page

__all__ = ["AuditEntry", "AuditPage", "EventLog", "EventPage"]

log = logging.getLogger(__name__)
_MAX_PAGE = 200


class EventPage(BaseModel):
    # Older ones: list_events(before=<the last one's id>). (No cursor field of its own: every token of
    # list_events' schema is read by every agent, and the id already is the cursor.)
    events: list[Event]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    tenant: str | None
    key_id: str
    action: str
    target: str | None
    outcome: str  # ok, or the error code
    detail: str | None


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    before: int | None


class EventLog:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._changed = anyio.Event()

    async def record(
        self,
        ts: TenantStore,
        kind: EventKind,
        target_id: str,
        target_name: str,
        type_: EventType,
        cause: str,
        exit_code: int | None = None,
    ) -> None:
        """Append one event of ``ts``'s tenant. The event log is a record of what happened, never a reason
        for it not to happen: a failure to write it is logged, and the use-case goes on."""
        try:
            await ts.events.record(
                kind, target_id, target_name, type_, cause[:1000], exit_code, self.settings.events_per_tenant
            )
        except (AgentHostError, sqlite3.Error):
            log.exception("event %s %s of %s %s not recorded", kind, type_, target_name, target_id)
            return
        self._changed.set()
        self._changed = anyio.Event()

    async def page(
        self, ts: TenantStore, kind: str | None, target: str | None, limit: int, before: int | None
    ) -> EventPage:
        """Newest first, ``limit`` at most; ``before`` is the cursor of the page before it (the id of its last
        event). The arguments are checked here rather than in list_events' schema, which every agent reads.

        Raises: InvalidInput for an unknown kind or a limit outside 1..200."""
        if kind is not None and kind not in get_args(EventKind):
            raise InvalidInput(f"unknown kind {kind!r}", f"use one of {', '.join(get_args(EventKind))}, or omit it")
        if not 1 <= limit <= _MAX_PAGE:
            raise InvalidInput(f"limit {limit} is outside 1..{_MAX_PAGE}", "page with before= for more")
        return EventPage(events=await ts.events.page(cast(EventKind | None, kind), target, limit, before))

    async def audit(self, p: Principal, tenant: str | None, limit: int, before: int | None) -> AuditPage:
        """Admins: the audit log of one tenant (by name) or of all, newest first: which key called which tool
        on what, and the outcome.

        Raises: Forbidden for a member; NotFound for an unknown tenant."""
        if not p.is_admin:
            raise Forbidden("only admins read the audit log")
        tenant_id = (await self.store.tenants.by_name(tenant)).id if tenant is not None else None
        rows = await audit_page(self.store.db, tenant_id, limit, before)
        entries = [AuditEntry.model_validate(r) for r in rows]
        return AuditPage(entries=entries, before=entries[-1].id if len(entries) == limit else None)

    async def watch(self, ts: TenantStore, cursor: int, poll_s: float = 1.0) -> AsyncIterator[Event]:
        """The tenant's events after ``cursor`` (an event id; ``ts.events.last_id()`` for "from now on"),
        oldest first, for as long as the caller iterates.

        Woken at once by an event recorded in this process; an event of another process on the same data
        dir is seen within ``poll_s``."""
        while True:
            changed = self._changed
            for event in await ts.events.after(cursor):
                cursor = event.id
                yield event
            with anyio.move_on_after(poll_s):
                await changed.wait()
