"""The audit log: who did what, when, and how it ended."""

from __future__ import annotations

from typing import Any

from .db import Database, now_iso

__all__ = ["AuditRepo", "audit_page", "expire_audit"]


async def expire_audit(db: Database, before: str) -> int:
    """Delete every tenant's audit rows older than ``before`` (an ISO timestamp); returns how many went."""
    return await db.execute("DELETE FROM audit_log WHERE ts < ?", (before,))


async def audit_page(db: Database, tenant_id: str | None, limit: int, before: int | None) -> list[dict[str, Any]]:
    """Newest first: entries of one tenant (every tenant's when None) with an id below ``before``; for admins."""
    where = ["a.id < ?"]
    params: list[Any] = [before if before is not None else 2**63 - 1]
    if tenant_id is not None:
        where.append("a.tenant_id = ?")
        params.append(tenant_id)
    rows = await db.fetchall(
        "SELECT a.id, a.ts AS at, t.name AS tenant, a.key_id, a.action, a.target, a.outcome, a.detail"
        f" FROM audit_log a LEFT JOIN tenants t ON t.id = a.tenant_id WHERE {' AND '.join(where)}"
        " ORDER BY a.id DESC LIMIT ?",
        (*params, limit),
    )
    return [dict(r) for r in rows]


class AuditRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def record(
        self, key_id: str, action: str, target: str | None, outcome: str, detail: str | None = None
    ) -> None:
        await self._db.execute(
            "INSERT INTO audit_log (ts, tenant_id, key_id, action, target, outcome, detail) VALUES (?,?,?,?,?,?,?)",
            (now_iso(), self._tenant, key_id, action, target, outcome, detail),
        )

    async def recent(self, limit: int = 100) -> list[dict[str, str]]:
        rows = await self._db.fetchall(
            "SELECT ts, key_id, action, target, outcome, detail FROM audit_log WHERE tenant_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (self._tenant, limit),
        )
        return [dict(r) for r in rows]
