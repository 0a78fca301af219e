"""The event log: what happened to a tenant's services, databases, builds, backups and sandboxes, and why."""

from __future__ import annotations

from typing import Any

from ..models import Event, EventKind, EventType
from .db import Database, Row, now_iso

__all__ = ["EventRepo", "expire_events"]

_COLUMNS = "id, ts, kind, target_id, target_name, type, cause, exit_code"


async def expire_events(db: Database, before: str) -> int:
    """Delete every tenant's events older than ``before`` (an ISO timestamp); returns how many went."""
    return await db.execute("DELETE FROM events WHERE ts < ?", (before,))


def _event(row: Row) -> Event:
    return Event(
        id=row["id"],
        at=row["ts"],
        kind=row["kind"],
        target=row["target_name"],
        target_id=row["target_id"],
        type=row["type"],
        cause=row["cause"],
        exit_code=row["exit_code"],
    )


class EventRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def record(
        self,
        kind: EventKind,
        target_id: str,
        target_name: str,
        type_: EventType,
        cause: str,
        exit_code: int | None,
        keep: int,
    ) -> int:
        """Append one event and drop the tenant's oldest beyond the newest ``keep``; returns the new id."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO events (ts, tenant_id, kind, target_id, target_name, type, cause, exit_code)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (now_iso(), self._tenant, kind, target_id, target_name, type_, cause, exit_code),
            )
            row = await tx.fetchone("SELECT last_insert_rowid() AS id")
            new_id = int(row["id"]) if row is not None else 0
            await tx.execute(
                "DELETE FROM events WHERE tenant_id = ? AND id <= (SELECT id FROM events WHERE tenant_id = ?"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self._tenant, self._tenant, keep),
            )
        return new_id

    async def page(self, kind: EventKind | None, target: str | None, limit: int, before: int | None) -> list[Event]:
        """Newest first: events with an id below ``before`` (all when None), of ``kind`` and ``target``
        (a name or an id) when given."""
        where, params = ["tenant_id = ?"], [self._tenant]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if target is not None:
            where.append("(target_name = ? OR target_id = ?)")
            params += [target, target]
        args: list[Any] = [*params]
        if before is not None:
            where.append("id < ?")
            args.append(before)
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit)
        )
        return [_event(r) for r in rows]

    async def after(self, cursor: int, limit: int = 100) -> list[Event]:
        """Oldest first: the events with an id above ``cursor``."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM events WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
            (self._tenant, cursor, limit),
        )
        return [_event(r) for r in rows]

    async def last_id(self) -> int:
        """The id of the tenant's newest event (0 when there is none)."""
        row = await self._db.fetchone("SELECT MAX(id) AS id FROM events WHERE tenant_id = ?", (self._tenant,))
        return int(row["id"]) if row is not None and row["id"] is not None else 0
