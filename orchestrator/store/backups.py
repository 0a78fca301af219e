"""Backups, restores and each tenant's restic repository password, always scoped to one tenant.

Backups and restores are operations that outlive nothing: each row names the process that
does the work (``owner``), so after a crash the platform can tell a live operation from an
abandoned one and finish it (``claim_abandoned``).

A running row is also the lock on its volume or database, shared by every process on the data
dir: ``check_free`` refuses what would touch it, and an operation's row is inserted in the same
transaction as its own check (as a service's record is, for deploy_service).
"""

from __future__ import annotations

import json
import secrets as _stdlib_secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import Conflict, NotFound
from ..models import BackupKind, BackupStatus, BackupTarget, Engine
from ..secrets import TenantCipher
from .db import Database, Executor, Row, Tx, now_iso

__all__ = ["BackupRecord", "BackupRepo", "Check", "RestoreRecord", "running_operations"]

# A check that must hold when an operation is recorded (a quota), run inside the transaction that records it.
Check = Callable[[Tx], Awaitable[None]]


class BackupRecord(BaseModel):
    id: str
    tenant_id: str
    kind: BackupKind
    source_name: str
    source_id: str | None
    engine: Engine | None
    target: BackupTarget
    status: BackupStatus
    snapshot_id: str | None
    size_bytes: int | None
    error: str | None
    owner: str | None
    paused_services: list[str]
    meta: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


class RestoreRecord(BaseModel):
    id: str
    tenant_id: str
    backup_id: str
    into_name: str
    into_id: str | None
    created_new: bool
    status: BackupStatus
    error: str | None
    owner: str | None
    paused_services: list[str]
    created_at: datetime
    finished_at: datetime | None


def _backup(row: Row) -> BackupRecord:
    data = dict(row)
    data["paused_services"] = json.loads(data["paused_services"])
    data["meta"] = json.loads(data["meta"])
    return BackupRecord.model_validate(data)


def _restore(row: Row) -> RestoreRecord:
    data = dict(row)
    data["paused_services"] = json.loads(data["paused_services"])
    data["created_new"] = bool(data["created_new"])
    return RestoreRecord.model_validate(data)


Table = Literal["backups", "restores"]


async def running_operations(db: Database) -> list[tuple[Table, str, str, str | None]]:
    """(table, id, tenant_id, owner) of every running backup and restore, all tenants: for recovery only."""
    found: list[tuple[Table, str, str, str | None]] = []
    for table in ("backups", "restores"):
        rows = await db.fetchall(f"SELECT id, tenant_id, owner FROM {table} WHERE status = 'running'")
        found += [(table, r["id"], r["tenant_id"], r["owner"]) for r in rows]
    return found


class BackupRepo:
    def __init__(self, db: Database, tenant_id: str, cipher: TenantCipher) -> None:
        self._db = db
        self._tenant = tenant_id
        self._cipher = cipher

    # -- the tenant's restic repository ----------------------------------------------------------

    async def repo_password(self, target: BackupTarget) -> str:
        """The repository password, made on first use (a race between processes keeps the first one)."""
        aad = f"restic:{self._tenant}:{target}"
        row = await self._db.fetchone(
            "SELECT password FROM backup_repos WHERE tenant_id = ? AND target = ?", (self._tenant, target)
        )
        if row is None:
            blob = self._cipher.encrypt_str(_stdlib_secrets.token_urlsafe(32), aad)
            await self._db.execute(
                "INSERT OR IGNORE INTO backup_repos (tenant_id, target, password, created_at) VALUES (?, ?, ?, ?)",
                (self._tenant, target, blob, now_iso()),
            )
            row = await self._db.fetchone(
                "SELECT password FROM backup_repos WHERE tenant_id = ? AND target = ?", (self._tenant, target)
            )
            assert row is not None
        return self._cipher.decrypt_str(row["password"], aad)

    # -- backups ----------------------------------------------------------------------------------

    async def insert(
        self,
        kind: BackupKind,
        source_name: str,
        source_id: str | None,
        engine: Engine | None,
        target: BackupTarget,
        owner: str,
        meta: dict[str, Any],
        check: Check | None = None,
    ) -> BackupRecord:
        """Record a running backup; ``check`` runs in the same transaction first (a quota).

        Raises: Conflict while another operation holds the source; what ``check`` raises."""
        backup_id = "bk_" + uuid.uuid4().hex[:12]
        row = (backup_id, self._tenant, kind, source_name, source_id, engine, target, owner, json.dumps(meta))
        async with self._db.transaction() as tx:
            await self.check_free(kind, [source_name], tx)
            if check is not None:
                await check(tx)
            await tx.execute(
                "INSERT INTO backups (id, tenant_id, kind, source_name, source_id, engine, target, status, owner,"
                " meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (*row, now_iso()),
            )
        return await self.get(backup_id)

    async def get(self, backup_id: str) -> BackupRecord:
        """Raises: NotFound (also for another tenant's backup: its existence is not revealed)."""
        row = await self._db.fetchone("SELECT * FROM backups WHERE tenant_id = ? AND id = ?", (self._tenant, backup_id))
        if row is None:
            raise NotFound(f"no backup {backup_id!r}", "list_backups shows your backups and their ids")
        return _backup(row)

    async def all(self, kind: BackupKind | None = None, source_name: str | None = None) -> list[BackupRecord]:
        sql = "SELECT * FROM backups WHERE tenant_id = ?"
        params: list[object] = [self._tenant]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if source_name is not None:
            sql += " AND source_name = ?"
            params.append(source_name)
        rows = await self._db.fetchall(sql + " ORDER BY created_at DESC", params)
        return [_backup(r) for r in rows]

    async def totals(self, tx: Executor | None = None) -> tuple[int, int]:
        """(backups of any status, bytes of the complete ones)."""
        row = await (tx or self._db).fetchone(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'complete' THEN size_bytes END), 0)"
            " FROM backups WHERE tenant_id = ?",
            (self._tenant,),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def running_on(
        self, kind: BackupKind, names: Sequence[str], tx: Executor | None = None, but: str | None = None
    ) -> tuple[str, str] | None:
        """(name, operation id) of a running backup of, or restore into, one of these volumes or databases;
        the operation ``but`` does not count."""
        if not names:
            return None
        marks = ", ".join("?" * len(names))
        row = await (tx or self._db).fetchone(
            "SELECT source_name AS name, id FROM backups WHERE tenant_id = ? AND kind = ? AND status = 'running'"
            f" AND source_name IN ({marks}) AND id IS NOT ?"
            " UNION ALL SELECT r.into_name AS name, r.id FROM restores r JOIN backups b ON b.id = r.backup_id"
            " WHERE r.tenant_id = ? AND b.kind = ? AND r.status = 'running'"
            f" AND r.into_name IN ({marks}) AND r.id IS NOT ? LIMIT 1",
            (self._tenant, kind, *names, but, self._tenant, kind, *names, but),
        )
        return (row["name"], row["id"]) if row is not None else None

    async def check_free(
        self, kind: BackupKind, names: Sequence[str], tx: Executor | None = None, but: str | None = None
    ) -> None:
        """Raises: Conflict while a backup or restore of one of these volumes or databases runs."""
        busy = await self.running_on(kind, names, tx, but)
        if busy is not None:
            raise Conflict(
                f"a backup/restore of {kind} {busy[0]} is running ({busy[1]})",
                "poll list_backups until it ends, then call again",
            )

    async def running_for(self, source_name: str, kind: BackupKind) -> list[BackupRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM backups WHERE tenant_id = ? AND kind = ? AND source_name = ? AND status = 'running'",
            (self._tenant, kind, source_name),
        )
        return [_backup(r) for r in rows]

    async def set_meta(self, backup_id: str, meta: dict[str, Any]) -> None:
        await self._db.execute(
            "UPDATE backups SET meta = ? WHERE id = ? AND tenant_id = ?", (json.dumps(meta), backup_id, self._tenant)
        )

    async def set_paused(self, table: Table, op_id: str, service_ids: list[str]) -> None:
        await self._db.execute(
            f"UPDATE {table} SET paused_services = ? WHERE id = ? AND tenant_id = ?",
            (json.dumps(service_ids), op_id, self._tenant),
        )

    async def finish(
        self,
        backup_id: str,
        status: BackupStatus,
        *,
        snapshot_id: str | None = None,
        size_bytes: int | None = None,
        error: str | None = None,
    ) -> None:
        await self._db.execute(
            "UPDATE backups SET status = ?, snapshot_id = COALESCE(?, snapshot_id), size_bytes = ?, error = ?,"
            " finished_at = ? WHERE id = ? AND tenant_id = ?",
            (status, snapshot_id, size_bytes, error, now_iso(), backup_id, self._tenant),
        )

    async def delete(self, backup_id: str) -> None:
        await self._db.execute("DELETE FROM backups WHERE id = ? AND tenant_id = ?", (backup_id, self._tenant))

    # -- restores ---------------------------------------------------------------------------------

    async def insert_restore(
        self,
        backup: BackupRecord,
        into_name: str,
        into_id: str | None,
        created_new: bool,
        owner: str,
        check: Check | None = None,
    ) -> RestoreRecord:
        """Record a running restore; ``check`` runs in the same transaction first (a quota).

        Raises: Conflict while another operation holds the target; what ``check`` raises."""
        restore_id = "rs_" + uuid.uuid4().hex[:12]
        async with self._db.transaction() as tx:
            await self.check_free(backup.kind, [into_name], tx)
            if check is not None:
                await check(tx)
            await tx.execute(
                "INSERT INTO restores (id, tenant_id, backup_id, into_name, into_id, created_new, status, owner,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (restore_id, self._tenant, backup.id, into_name, into_id, int(created_new), owner, now_iso()),
            )
        return await self.get_restore(restore_id)

    async def get_restore(self, restore_id: str) -> RestoreRecord:
        row = await self._db.fetchone(
            "SELECT * FROM restores WHERE tenant_id = ? AND id = ?", (self._tenant, restore_id)
        )
        if row is None:
            raise NotFound(f"no restore {restore_id!r}")
        return _restore(row)

    async def set_restore_target(self, restore_id: str, into_id: str) -> None:
        await self._db.execute(
            "UPDATE restores SET into_id = ? WHERE id = ? AND tenant_id = ?", (into_id, restore_id, self._tenant)
        )

    async def last_restore(self, backup_id: str) -> RestoreRecord | None:
        row = await self._db.fetchone(
            "SELECT * FROM restores WHERE tenant_id = ? AND backup_id = ? ORDER BY created_at DESC LIMIT 1",
            (self._tenant, backup_id),
        )
        return _restore(row) if row is not None else None

    async def volumes_being_restored(self, tx: Executor | None = None) -> set[str]:
        """Names of the new volumes running restores are making (not in the engine's list yet, maybe)."""
        rows = await (tx or self._db).fetchall(
            "SELECT r.into_name FROM restores r JOIN backups b ON b.id = r.backup_id AND b.tenant_id = r.tenant_id"
            " WHERE r.tenant_id = ? AND r.status = 'running' AND r.created_new = 1 AND b.kind = 'volume'",
            (self._tenant,),
        )
        return {str(r[0]) for r in rows}

    async def running_restores_into(self, into_name: str) -> list[RestoreRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM restores WHERE tenant_id = ? AND into_name = ? AND status = 'running'",
            (self._tenant, into_name),
        )
        return [_restore(r) for r in rows]

    async def finish_restore(self, restore_id: str, status: BackupStatus, error: str | None = None) -> None:
        await self._db.execute(
            "UPDATE restores SET status = ?, error = ?, finished_at = ? WHERE id = ? AND tenant_id = ?",
            (status, error, now_iso(), restore_id, self._tenant),
        )

    # -- recovery ---------------------------------------------------------------------------------

    async def claim_abandoned(self, table: Table, op_id: str, owner: str | None, claimer: str) -> bool:
        """Take over an operation whose owner died; only one process wins the claim."""
        changed = await self._db.execute(
            f"UPDATE {table} SET owner = ? WHERE id = ? AND tenant_id = ? AND status = 'running' AND owner IS ?",
            (claimer, op_id, self._tenant, owner),
        )
        return changed == 1
