"""SSH host keys of services: generated once per service, kept encrypted with the tenant key."""

from __future__ import annotations

from collections.abc import Callable

from ..secrets import TenantCipher
from .db import Database, now_iso

__all__ = ["HostKey", "HostKeyRepo"]

HostKey = tuple[str, str, str]  # (private key in OpenSSH PEM, public key line, SHA256 fingerprint)


class HostKeyRepo:
    def __init__(self, db: Database, tenant_id: str, cipher: TenantCipher) -> None:
        self._db = db
        self._tenant = tenant_id
        self._cipher = cipher

    def _aad(self, service_id: str) -> str:
        return f"ssh-host-key:{self._tenant}:{service_id}"

    async def get(self, service_id: str) -> HostKey | None:
        row = await self._db.fetchone(
            "SELECT private_key, public_key, fingerprint FROM ssh_host_keys WHERE tenant_id = ? AND service_id = ?",
            (self._tenant, service_id),
        )
        if row is None:
            return None
        private = self._cipher.decrypt_str(row["private_key"], self._aad(service_id))
        return private, row["public_key"], row["fingerprint"]

    async def get_or_create(self, service_id: str, generate: Callable[[], HostKey]) -> HostKey:
        """The service's host key, generated on first use. Concurrent callers (other processes too) get one key."""
        found = await self.get(service_id)
        if found is not None:
            return found
        private, public, fingerprint = generate()
        await self._db.execute(
            "INSERT OR IGNORE INTO ssh_host_keys (service_id, tenant_id, private_key, public_key, fingerprint,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                service_id,
                self._tenant,
                self._cipher.encrypt_str(private, self._aad(service_id)),
                public,
                fingerprint,
                now_iso(),
            ),
        )
        stored = await self.get(service_id)
        assert stored is not None  # inserted above, or by the caller that won the race
        return stored
