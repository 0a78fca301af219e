"""API keys. Lookup by key id is global (it is how a request finds its tenant); the rest is tenant-scoped."""

from __future__ import annotations

from ..models import ApiKeyInfo, Role, Scope
from .db import Database, Executor, Row, now_iso

__all__ = ["ApiKeyRepo", "KeyLookup", "StoredKey"]


class StoredKey:
    def __init__(self, row: Row) -> None:
        self.id: str = row["id"]
        self.tenant_id: str = row["tenant_id"]
        self.tenant_name: str = row["tenant_name"]
        self.role: Role = row["role"]
        self.scope: Scope = row["scope"]
        self.secret_hash: bytes = row["secret_hash"]
        self.revoked: bool = row["revoked_at"] is not None


_SELECT = "SELECT k.*, t.name AS tenant_name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"


def _info(row: Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        name=row["name"],
        tenant=row["tenant_name"],
        role=row["role"],
        scope=row["scope"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked=row["revoked_at"] is not None,
    )


class KeyLookup:
    """Unscoped: resolves a presented key id to its tenant during authentication."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, key_id: str) -> StoredKey | None:
        row = await self._db.fetchone(f"{_SELECT} WHERE k.id = ?", (key_id,))
        return StoredKey(row) if row else None

    async def touch(self, key_id: str) -> None:
        await self._db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now_iso(), key_id))


class ApiKeyRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(
        self, key_id: str, name: str, role: Role, scope: Scope, secret_hash: bytes, tx: Executor | None = None
    ) -> ApiKeyInfo:
        ex = tx or self._db
        await ex.execute(
            "INSERT INTO api_keys (id, tenant_id, name, role, scope, secret_hash, created_at) VALUES (?,?,?,?,?,?,?)",
            (key_id, self._tenant, name, role, scope, secret_hash, now_iso()),
        )
        row = await ex.fetchone(f"{_SELECT} WHERE k.id = ? AND k.tenant_id = ?", (key_id, self._tenant))
        assert row is not None
        return _info(row)

    async def all(self) -> list[ApiKeyInfo]:
        rows = await self._db.fetchall(f"{_SELECT} WHERE k.tenant_id = ? ORDER BY k.created_at", (self._tenant,))
        return [_info(r) for r in rows]

    async def get(self, key_id: str) -> ApiKeyInfo | None:
        row = await self._db.fetchone(f"{_SELECT} WHERE k.id = ? AND k.tenant_id = ?", (key_id, self._tenant))
        return _info(row) if row else None

    async def revoke(self, key_id: str) -> bool:
        changed = await self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL",
            (now_iso(), key_id, self._tenant),
        )
        return changed > 0

    async def count_active(self, tx: Executor | None = None) -> int:
        row = await (tx or self._db).fetchone(
            "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL", (self._tenant,)
        )
        return int(row[0]) if row else 0

    async def count_active_admins(self) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND role = 'admin' AND revoked_at IS NULL",
            (self._tenant,),
        )
        return int(row[0]) if row else 0
