"""Service environment variables, encrypted with the tenant's key; the aad binds each value to its service and key."""

from __future__ import annotations

from ..secrets import TenantCipher
from .db import Database, Executor, now_iso

__all__ = ["EnvRepo"]


class EnvRepo:
    def __init__(self, db: Database, tenant_id: str, cipher: TenantCipher) -> None:
        self._db = db
        self._tenant = tenant_id
        self._cipher = cipher

    def _aad(self, service_id: str, key: str) -> str:
        return f"env:{self._tenant}:{service_id}:{key}"

    async def set_many(self, service_id: str, values: dict[str, str], tx: Executor | None = None) -> None:
        ex = tx or self._db
        now = now_iso()
        for key, value in values.items():
            blob = self._cipher.encrypt_str(value, self._aad(service_id, key))
            await ex.execute(
                "INSERT INTO env_vars (tenant_id, service_id, key, value, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (service_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (self._tenant, service_id, key, blob, now),
            )

    async def replace(self, service_id: str, values: dict[str, str], tx: Executor) -> None:
        """The service's env becomes exactly ``values``."""
        await tx.execute("DELETE FROM env_vars WHERE tenant_id = ? AND service_id = ?", (self._tenant, service_id))
        await self.set_many(service_id, values, tx)

    async def unset(self, service_id: str, keys: list[str], tx: Executor | None = None) -> list[str]:
        removed = []
        for key in keys:
            changed = await (tx or self._db).execute(
                "DELETE FROM env_vars WHERE tenant_id = ? AND service_id = ? AND key = ?",
                (self._tenant, service_id, key),
            )
            if changed:
                removed.append(key)
        return removed

    async def get_all(self, service_id: str, tx: Executor | None = None) -> dict[str, str]:
        rows = await (tx or self._db).fetchall(
            "SELECT key, value FROM env_vars WHERE tenant_id = ? AND service_id = ? ORDER BY key",
            (self._tenant, service_id),
        )
        return {r["key"]: self._cipher.decrypt_str(r["value"], self._aad(service_id, r["key"])) for r in rows}

    async def keys(self, service_id: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT key FROM env_vars WHERE tenant_id = ? AND service_id = ? ORDER BY key", (self._tenant, service_id)
        )
        return [r["key"] for r in rows]
