"""Sandboxes (scoped to a tenant) and the warm pool of pre-started sandbox containers (platform-wide).

A pooled container is handed out by one statement, ``DELETE ... RETURNING``, inside the transaction that
records the tenant's sandbox: SQLite runs it atomically, across processes sharing the data dir too, so a
pooled container goes to exactly one sandbox, and its id is always in one table or the other (the orphan
collector never sees it unowned).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from ..errors import Conflict, NotFound
from .db import Database, Executor, Row, now_iso

__all__ = ["PoolRepo", "PoolRow", "SandboxRecord", "SandboxRepo", "all_sandbox_records", "new_sandbox_id"]

SandboxStatus = Literal["creating", "running", "deleting"]


def new_sandbox_id() -> str:
    return "sbx_" + uuid.uuid4().hex[:12]


class SandboxRecord(BaseModel):
    id: str
    tenant_id: str
    name: str
    image: str
    network: Literal["none", "egress"]
    memory_mb: int
    cpus: float
    status: SandboxStatus
    from_pool: bool
    created_at: datetime
    expires_at: datetime
    ssh_public_keys: list[str] = []


class PoolRow(BaseModel):
    workload_id: str
    pool_key: str
    state: Literal["warming", "ready"]
    created_at: datetime


def _record(row: Row) -> SandboxRecord:
    values = dict(row)
    values["ssh_public_keys"] = json.loads(values.get("ssh_public_keys") or "[]")
    return SandboxRecord(**values)


async def all_sandbox_records(db: Database) -> list[SandboxRecord]:
    """Every tenant's sandboxes: for the reaper and the orphan collector only, never for a tool."""
    return [_record(r) for r in await db.fetchall("SELECT * FROM sandboxes ORDER BY created_at")]


class SandboxRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def count(self, tx: Executor | None = None) -> int:
        row = await (tx or self._db).fetchone("SELECT COUNT(*) FROM sandboxes WHERE tenant_id = ?", (self._tenant,))
        return int(row[0]) if row else 0

    async def usage(self, tx: Executor | None = None) -> tuple[int, int, float]:
        """(count, memory_mb, cpus) of the tenant's sandboxes, those being created or deleted too."""
        row = await (tx or self._db).fetchone(
            "SELECT COUNT(*), COALESCE(SUM(memory_mb), 0), COALESCE(SUM(cpus), 0) FROM sandboxes WHERE tenant_id = ?",
            (self._tenant,),
        )
        return (int(row[0]), int(row[1]), float(row[2])) if row else (0, 0, 0.0)

    async def insert(
        self,
        tx: Executor,
        *,
        sandbox_id: str,
        name: str,
        image: str,
        network: str,
        memory_mb: int,
        cpus: float,
        status: SandboxStatus,
        from_pool: bool,
        expires_at: str,
    ) -> SandboxRecord:
        """Raises: Conflict when the name is taken."""
        if await tx.fetchone("SELECT 1 FROM sandboxes WHERE tenant_id = ? AND name = ?", (self._tenant, name)):
            raise Conflict(f"a sandbox named {name!r} already exists", "pick another name or delete_sandbox it")
        await tx.execute(
            "INSERT INTO sandboxes (id, tenant_id, name, image, network, memory_mb, cpus, status, from_pool,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sandbox_id,
                self._tenant,
                name,
                image,
                network,
                memory_mb,
                cpus,
                status,
                int(from_pool),
                now_iso(),
                expires_at,
            ),
        )
        return await self.get(sandbox_id, tx)

    async def get(self, ref: str, tx: Executor | None = None) -> SandboxRecord:
        """Find by name or id. Raises: NotFound."""
        row = await (tx or self._db).fetchone(
            "SELECT * FROM sandboxes WHERE tenant_id = ? AND (id = ? OR name = ?)", (self._tenant, ref, ref)
        )
        if row is None:
            raise NotFound(f"no sandbox named {ref!r}", "list_sandboxes shows the sandboxes you own")
        return _record(row)

    async def all(self) -> list[SandboxRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM sandboxes WHERE tenant_id = ? ORDER BY created_at", (self._tenant,)
        )
        return [_record(r) for r in rows]

    async def set_status(self, sandbox_id: str, status: SandboxStatus) -> None:
        await self._db.execute(
            "UPDATE sandboxes SET status = ? WHERE id = ? AND tenant_id = ?", (status, sandbox_id, self._tenant)
        )

    async def set_ssh_keys(self, sandbox_id: str, keys: list[str]) -> None:
        await self._db.execute(
            "UPDATE sandboxes SET ssh_public_keys = ? WHERE id = ? AND tenant_id = ?",
            (json.dumps(keys), sandbox_id, self._tenant),
        )

    async def extend(self, sandbox_id: str, expires_at: str) -> bool:
        """Move a running sandbox's deadline; False when it is not running or its deadline already passed (the
        reaper may be removing it)."""
        changed = await self._db.execute(
            "UPDATE sandboxes SET expires_at = ? WHERE id = ? AND tenant_id = ? AND status = 'running'"
            " AND expires_at > ?",
            (expires_at, sandbox_id, self._tenant, now_iso()),
        )
        return changed > 0

    async def delete(self, sandbox_id: str) -> bool:
        changed = await self._db.execute(
            "DELETE FROM sandboxes WHERE id = ? AND tenant_id = ?", (sandbox_id, self._tenant)
        )
        return changed > 0


class PoolRepo:
    """The warm pool's bookkeeping. A row exists before its container does, and is gone once it is claimed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, pool_key: str, size: int) -> str | None:
        """Record a new warming slot when the pool for ``pool_key`` has fewer than ``size``; returns its id."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM sandbox_pool WHERE pool_key = ?", (pool_key,))
            if row is not None and int(row[0]) >= size:
                return None
            workload_id = new_sandbox_id()
            await tx.execute(
                "INSERT INTO sandbox_pool (workload_id, pool_key, state, created_at) VALUES (?, ?, 'warming', ?)",
                (workload_id, pool_key, now_iso()),
            )
            return workload_id

    async def mark_ready(self, workload_id: str) -> bool:
        changed = await self._db.execute(
            "UPDATE sandbox_pool SET state = 'ready' WHERE workload_id = ? AND state = 'warming'", (workload_id,)
        )
        return changed > 0

    async def claim(self, tx: Executor, pool_key: str, prefer: Collection[str] = ()) -> str | None:
        """Take a ready container of ``pool_key`` out of the pool, atomically: the oldest of ``prefer`` if one is
        ready, else the oldest; None when empty."""
        first = ",".join("?" * len(prefer))
        order = f"workload_id NOT IN ({first}), created_at" if prefer else "created_at"
        row = await tx.fetchone(
            "DELETE FROM sandbox_pool WHERE workload_id = (SELECT workload_id FROM sandbox_pool"
            f" WHERE pool_key = ? AND state = 'ready' ORDER BY {order} LIMIT 1) RETURNING workload_id",
            (pool_key, *prefer),
        )
        return str(row[0]) if row else None

    async def ready(self, pool_key: str, tx: Executor | None = None) -> int:
        """How many containers of ``pool_key`` are ready to be claimed."""
        row = await (tx or self._db).fetchone(
            "SELECT count(*) FROM sandbox_pool WHERE pool_key = ? AND state = 'ready'", (pool_key,)
        )
        return int(row[0]) if row else 0

    async def remove(self, workload_id: str) -> bool:
        return await self._db.execute("DELETE FROM sandbox_pool WHERE workload_id = ?", (workload_id,)) > 0

    async def record_demand(self, pool_key: str) -> None:
        await self._db.execute(
            "INSERT INTO sandbox_pool_demand (pool_key, last_request_at) VALUES (?, ?)"
            " ON CONFLICT (pool_key) DO UPDATE SET last_request_at = excluded.last_request_at",
            (pool_key, now_iso()),
        )

    async def demanded_since(self, since: str) -> set[str]:
        rows = await self._db.fetchall("SELECT pool_key FROM sandbox_pool_demand WHERE last_request_at >= ?", (since,))
        return {str(r["pool_key"]) for r in rows}

    async def all(self) -> list[PoolRow]:
        rows = await self._db.fetchall("SELECT * FROM sandbox_pool ORDER BY created_at")
        return [PoolRow(**dict(r)) for r in rows]
