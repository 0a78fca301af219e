"""Service revisions, scoped to one tenant: what each version of a service ran, its env encrypted.

A revision's env is one AES-256-GCM blob under the tenant's key, its aad binding it to the tenant, the
service and the revision number, so a blob copied to another revision or tenant fails its integrity check.
Only key names and a keyed hash of the env (``env_version``) are readable without decrypting.
"""

from __future__ import annotations

import json

from ..errors import NotFound
from ..models import RevisionRecord, ServiceSpec
from ..secrets import TenantCipher
from .db import Database, Executor, Row, now_iso

__all__ = ["RevisionRepo"]


def _record(row: Row) -> RevisionRecord:
    return RevisionRecord(
        service_id=row["service_id"],
        number=row["number"],
        created_at=row["created_at"],
        cause=row["cause"],
        spec=ServiceSpec.model_validate_json(row["spec"]),
        image_digest=row["image_digest"],
        env_keys=json.loads(row["env_keys"]),
        env_version=row["env_version"],
        live=bool(row["live"]),
        failed=bool(row["failed"]),
    )


class RevisionRepo:
    def __init__(self, db: Database, tenant_id: str, cipher: TenantCipher) -> None:
        self._db = db
        self._tenant = tenant_id
        self._cipher = cipher

    def _aad(self, service_id: str, number: int) -> str:
        return f"revision-env:{self._tenant}:{service_id}:{number}"

    def env_version(self, env: dict[str, str]) -> str:
        return self._cipher.fingerprint(json.dumps(env, sort_keys=True, separators=(",", ":")))

    async def add(
        self,
        service_id: str,
        spec: ServiceSpec,
        env: dict[str, str],
        cause: str,
        image_digest: str | None,
        keep: int,
        tx: Executor,
    ) -> int:
        """Record a new live revision inside the caller's transaction; returns its number. Past ``keep``
        revisions the oldest are deleted, never the one live until now (a failed change goes back to it)."""
        row = await tx.fetchone(
            "SELECT COALESCE(MAX(number), 0) AS n FROM service_revisions WHERE tenant_id = ? AND service_id = ?",
            (self._tenant, service_id),
        )
        number = (row["n"] if row is not None else 0) + 1
        await tx.execute(
            "DELETE FROM service_revisions WHERE tenant_id = ? AND service_id = ? AND number <= ? AND live = 0",
            (self._tenant, service_id, number - keep),
        )
        blob = self._cipher.encrypt_str(json.dumps(env), self._aad(service_id, number))
        await tx.execute(
            "INSERT INTO service_revisions (tenant_id, service_id, number, created_at, cause, spec, image_digest,"
            " env, env_keys, env_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._tenant,
                service_id,
                number,
                now_iso(),
                cause,
                spec.model_dump_json(),
                image_digest,
                blob,
                json.dumps(sorted(env)),
                self.env_version(env),
            ),
        )
        await self._make_live(service_id, number, tx)
        return number

    async def _make_live(self, service_id: str, number: int | None, tx: Executor) -> None:
        await tx.execute(
            "UPDATE service_revisions SET live = (number IS ?) WHERE tenant_id = ? AND service_id = ?",
            (number, self._tenant, service_id),
        )

    async def undo(self, service_id: str, number: int, previous: int | None, tx: Executor) -> None:
        """Revision ``number`` did not come up and was undone: it is failed, and ``previous`` live again."""
        await tx.execute(
            "UPDATE service_revisions SET failed = 1 WHERE tenant_id = ? AND service_id = ? AND number = ?",
            (self._tenant, service_id, number),
        )
        await self._make_live(service_id, previous, tx)

    async def all(self, service_id: str, tx: Executor | None = None) -> list[RevisionRecord]:
        """Newest first."""
        rows = await (tx or self._db).fetchall(
            "SELECT * FROM service_revisions WHERE tenant_id = ? AND service_id = ? ORDER BY number DESC",
            (self._tenant, service_id),
        )
        return [_record(r) for r in rows]

    async def live(self, service_id: str, tx: Executor | None = None) -> int | None:
        """The number of the live revision; None for a service recorded before revisions were kept."""
        row = await (tx or self._db).fetchone(
            "SELECT number FROM service_revisions WHERE tenant_id = ? AND service_id = ? AND live = 1",
            (self._tenant, service_id),
        )
        return int(row["number"]) if row is not None else None

    async def any(self, service_id: str, tx: Executor | None = None) -> bool:
        row = await (tx or self._db).fetchone(
            "SELECT 1 FROM service_revisions WHERE tenant_id = ? AND service_id = ? LIMIT 1",
            (self._tenant, service_id),
        )
        return row is not None

    async def get(self, service_id: str, name: str, number: int) -> tuple[RevisionRecord, dict[str, str]]:
        """A revision and its env, decrypted. Raises: NotFound."""
        row = await self._db.fetchone(
            "SELECT * FROM service_revisions WHERE tenant_id = ? AND service_id = ? AND number = ?",
            (self._tenant, service_id, number),
        )
        if row is None:
            raise NotFound(f"service {name} has no revision {number}", "list_revisions shows the ones kept")
        env = json.loads(self._cipher.decrypt_str(row["env"], self._aad(service_id, number)))
        return _record(row), {str(k): str(v) for k, v in env.items()}
