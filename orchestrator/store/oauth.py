"""OAuth clients, pending consents, codes and tokens. Lookups are global (a presented token finds its tenant);
every secret is looked up by its SHA-256, never stored as presented."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ..secrets import TenantCipher
from .db import Database, Row, now_iso

__all__ = ["OAuthRepo"]

_CLIENT_GRACE_S = 86400.0

# A token row joined with the live key behind it: a revoked key's tokens never come back from here.
_TOKEN = (
    "SELECT o.*, k.role, t.id AS tenant_id, t.name AS tenant_name FROM oauth_tokens o "
    "JOIN api_keys k ON k.id = o.key_id AND k.revoked_at IS NULL JOIN tenants t ON t.id = k.tenant_id"
)


class OAuthRepo:
    def __init__(self, db: Database, cipher: TenantCipher) -> None:
        self._db = db
        self._cipher = cipher

    async def add_client(self, client_id: str, info_json: str) -> None:
        await self.expire()
        blob = self._cipher.encrypt(info_json.encode(), f"oauth-client:{client_id}")
        await self._db.execute(
            "INSERT INTO oauth_clients (client_id, info, created_at) VALUES (?,?,?)", (client_id, blob, now_iso())
        )

    async def client(self, client_id: str) -> str | None:
        row = await self._db.fetchone("SELECT info FROM oauth_clients WHERE client_id = ?", (client_id,))
        return self._cipher.decrypt(row["info"], f"oauth-client:{client_id}").decode() if row else None

    async def add_pending(self, id_hash: bytes, client_id: str, request_json: str, expires_at: float) -> None:
        await self.expire()
        await self._db.execute(
            "INSERT INTO oauth_pending (id_hash, client_id, request, expires_at) VALUES (?,?,?,?)",
            (id_hash, client_id, request_json, expires_at),
        )

    async def pending(self, id_hash: bytes) -> Row | None:
        return await self._db.fetchone(
            "SELECT * FROM oauth_pending WHERE id_hash = ? AND expires_at > ?", (id_hash, time.time())
        )

    async def take_pending(self, id_hash: bytes) -> Row | None:
        """Remove and return a live pending consent: it answers once."""
        async with self._db.transaction() as tx:  # a write: reads outside a transaction cannot write
            return await tx.fetchone(
                "DELETE FROM oauth_pending WHERE id_hash = ? AND expires_at > ? RETURNING *", (id_hash, time.time())
            )

    async def add_code(
        self,
        code_hash: bytes,
        grant_id: str,
        client_id: str,
        key_id: str,
        scope: str,
        request_json: str,
        expires_at: float,
    ) -> None:
        await self._db.execute(
            "INSERT INTO oauth_codes (code_hash, grant_id, client_id, key_id, scope, request, expires_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (code_hash, grant_id, client_id, key_id, scope, request_json, expires_at),
        )

    async def use_code(self, code_hash: bytes, client_id: str) -> tuple[Row | None, str | None]:
        """Spend a code: (its row, None) the first time; (None, its grant id) when it was spent before."""
        now = time.time()
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "UPDATE oauth_codes SET used_at = ? WHERE code_hash = ? AND client_id = ? AND used_at IS NULL "
                "RETURNING *",
                (now, code_hash, client_id),
            )
            if row is not None:
                return row, None
            spent = await tx.fetchone(
                "SELECT grant_id FROM oauth_codes WHERE code_hash = ? AND client_id = ?", (code_hash, client_id)
            )
            return None, spent["grant_id"] if spent else None

    async def add_tokens(
        self,
        grant_id: str,
        client_id: str,
        key_id: str,
        scope: str,
        resource: str | None,
        tokens: list[tuple[bytes, str, float]],
    ) -> None:
        """Insert tokens of one grant together: (hash, kind, expires_at) each."""
        async with self._db.transaction() as tx:
            for token_hash, kind, expires_at in tokens:
                await tx.execute(
                    "INSERT INTO oauth_tokens (token_hash, kind, grant_id, client_id, key_id, scope, resource, "
                    "expires_at) VALUES (?,?,?,?,?,?,?,?)",
                    (token_hash, kind, grant_id, client_id, key_id, scope, resource, expires_at),
                )

    async def token(self, token_hash: bytes, kind: str) -> Row | None:
        """A token of ``kind`` whose key is not revoked and that has not expired (rotated ones included)."""
        return await self._db.fetchone(
            f"{_TOKEN} WHERE o.token_hash = ? AND o.kind = ? AND o.expires_at > ?", (token_hash, kind, time.time())
        )

    async def rotate(self, token_hash: bytes) -> bool:
        """Mark a refresh token exchanged and drop the access tokens of its grant; False if it already was."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "UPDATE oauth_tokens SET rotated_at = ? WHERE token_hash = ? AND kind = 'refresh' "
                "AND rotated_at IS NULL RETURNING grant_id",
                (time.time(), token_hash),
            )
            if row is None:
                return False
            await tx.execute("DELETE FROM oauth_tokens WHERE grant_id = ? AND kind = 'access'", (row["grant_id"],))
            return True

    async def revoke_grant(self, grant_id: str) -> None:
        await self._db.execute("DELETE FROM oauth_tokens WHERE grant_id = ?", (grant_id,))

    async def forget_key(self, key_id: str) -> None:
        """Every code and token issued on the strength of this key."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM oauth_tokens WHERE key_id = ?", (key_id,))
            await tx.execute("DELETE FROM oauth_codes WHERE key_id = ?", (key_id,))

    async def expire(self) -> None:
        """Drop what has expired: consents, codes, and tokens (a rotated refresh token lives out its term,
        so that its replay is still recognised); and clients, which anyone may register, that hold no token
        a day after they registered."""
        now = time.time()
        stale = datetime.fromtimestamp(now - _CLIENT_GRACE_S, UTC).isoformat(timespec="milliseconds")
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM oauth_clients WHERE created_at < ? "
                "AND client_id NOT IN (SELECT client_id FROM oauth_tokens)",
                (stale,),
            )
            await tx.execute("DELETE FROM oauth_pending WHERE expires_at <= ?", (now,))
            await tx.execute("DELETE FROM oauth_codes WHERE expires_at <= ?", (now,))
            await tx.execute("DELETE FROM oauth_tokens WHERE expires_at <= ?", (now,))
