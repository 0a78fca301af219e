"""Idempotency-Key rows of REST mutations: a key is claimed atomically before its call runs, then holds the
answer (or only the fact that it held a secret, shown once), per API key, until it expires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from .db import Database, Executor, now_iso

__all__ = ["Earlier", "IdempotencyRepo", "expire_idempotency"]

State = Literal["running", "done", "secret"]


@dataclass(frozen=True)
class Earlier:
    """What already holds an Idempotency-Key."""

    action: str
    request_hash: str
    state: State
    body: str | None


def _after(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


async def expire_idempotency(db: Executor) -> int:
    """Delete every tenant's expired rows (finished ones past their TTL, unfinished ones past their lease)."""
    return await db.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now_iso(),))


class IdempotencyRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def reserve(self, key_id: str, key: str, action: str, request_hash: str, lease_s: float) -> Earlier | None:
        """Claim ``key`` for one run of ``action``: None when the caller got it and may run, else what holds it.

        The claim is one INSERT in one transaction, so of two concurrent requests exactly one gets it."""
        async with self._db.transaction() as tx:
            await expire_idempotency(tx)
            claimed = await tx.execute(
                "INSERT INTO idempotency (tenant_id, key_id, key, action, request_hash, state, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?) ON CONFLICT DO NOTHING",
                (self._tenant, key_id, key, action, request_hash, now_iso(), _after(lease_s)),
            )
            if claimed:
                return None
            row = await tx.fetchone(
                "SELECT action, request_hash, state, body FROM idempotency"
                " WHERE tenant_id = ? AND key_id = ? AND key = ?",
                (self._tenant, key_id, key),
            )
        assert row is not None  # the INSERT conflicted with it inside this transaction
        return Earlier(row["action"], row["request_hash"], row["state"], row["body"])

    async def finish(self, key_id: str, key: str, body: str | None, ttl_s: float) -> None:
        """Keep the answer for replays; ``body=None`` when it held a secret, which is never stored."""
        await self._db.execute(
            "UPDATE idempotency SET state = ?, body = ?, expires_at = ? WHERE tenant_id = ? AND key_id = ? AND key = ?",
            ("secret" if body is None else "done", body, _after(ttl_s), self._tenant, key_id, key),
        )

    async def release(self, key_id: str, key: str) -> None:
        """Give the key back after a failed run, so that a retry runs again."""
        await self._db.execute(
            "DELETE FROM idempotency WHERE tenant_id = ? AND key_id = ? AND key = ? AND state = 'running'",
            (self._tenant, key_id, key),
        )
