"""Tenants (platform-wide: only admins and the CLI reach this repo)."""

from __future__ import annotations

import json
import uuid

from ..errors import Conflict, NotFound
from ..models import Tenant
from ..settings import Quotas
from .db import Database, Executor, Row, now_iso

__all__ = ["TenantRepo"]


def _tenant(row: Row) -> Tenant:
    return Tenant(
        id=row["id"], name=row["name"], created_at=row["created_at"], quotas=Quotas(**json.loads(row["quotas"]))
    )


class TenantRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, name: str, quotas: Quotas, tx: Executor | None = None) -> Tenant:
        """Raises: Conflict when the name is taken."""
        ex = tx or self._db
        if await ex.fetchone("SELECT 1 FROM tenants WHERE name = ?", (name,)):
            raise Conflict(f"tenant {name!r} already exists")
        tenant_id = "t_" + uuid.uuid4().hex[:12]
        await ex.execute(
            "INSERT INTO tenants (id, name, quotas, created_at) VALUES (?, ?, ?, ?)",
            (tenant_id, name, quotas.model_dump_json(), now_iso()),
        )
        row = await ex.fetchone("SELECT * FROM tenants WHERE id = ?", (tenant_id,))
        assert row is not None
        return _tenant(row)

    async def get(self, tenant_id: str, tx: Executor | None = None) -> Tenant:
        row = await (tx or self._db).fetchone("SELECT * FROM tenants WHERE id = ?", (tenant_id,))
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return _tenant(row)

    async def by_name(self, name: str) -> Tenant:
        row = await self._db.fetchone("SELECT * FROM tenants WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"tenant {name!r} not found", "list tenants with `agenthost tenant list`")
        return _tenant(row)

    async def all(self) -> list[Tenant]:
        return [_tenant(r) for r in await self._db.fetchall("SELECT * FROM tenants ORDER BY created_at")]

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM tenants")
        return int(row[0]) if row else 0
