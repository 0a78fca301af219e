"""Stored answers to REST mutations sent with an Idempotency-Key, so a retried request is not applied twice."""

from __future__ import annotations

from .db import Database, now_iso

__all__ = ["IdempotencyRepo"]


class IdempotencyRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def find(self, key: str) -> tuple[str, str, int, str] | None:
        """(action, request_hash, status, body) of an earlier answer."""
        row = await self._db.fetchone(
            "SELECT action, request_hash, status, body FROM idempotency WHERE tenant_id = ? AND key = ?",
            (self._tenant, key),
        )
        return (row["action"], row["request_hash"], row["status"], row["body"]) if row else None

    async def save(self, key: str, action: str, request_hash: str, status: int, body: str) -> None:
        await self._db.execute(
            "INSERT OR IGNORE INTO idempotency (tenant_id, key, action, request_hash, status, body, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (self._tenant, key, action, request_hash, status, body, now_iso()),
        )

    async def expire(self, before_iso: str) -> None:
        await self._db.execute("DELETE FROM idempotency WHERE created_at < ?", (before_iso,))
