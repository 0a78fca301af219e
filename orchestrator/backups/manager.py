"""Backups and restores of databases and service volumes, in each tenant's restic repository.

Use-cases follow the platform's rule: validate (including that the backup target answers)
→ record the operation → do the work → record the outcome. The work runs in the background
(``BackupManager.run`` hosts it), so a tool waits for it only as long as ``wait`` allows and
the agent polls ``list_backups`` afterwards. Creating is ``create``, restoring ``restore``,
and resolving what a dead process left running ``recovery``.

Root never follows a path the tenant can write: every operation stages its files in its own
root-only directory (``<backup_staging_dir>/<op id>``), restic writes only there, and files
cross between staging and a volume only through ``files`` (see ``sources``).
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from ..backends.base import Backend
from ..databases import DatabaseManager
from ..errors import AgentHostError, Conflict, InvalidInput
from ..events import EventLog
from ..models import BackupTarget, Deleted, Principal
from ..progress import Reporter
from ..services import ServiceManager
from ..settings import Settings
from ..store import Store, TenantStore
from ..store.backups import BackupRecord
from .create import Creates
from .models import Backup, RestoreInfo
from .moves import DataMoves
from .operations import Operations
from .recovery import Recovery
from .restore import Restores

__all__ = ["BackupManager"]

log = logging.getLogger(__name__)


class BackupManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        backend: Backend,
        services: ServiceManager,
        databases: DatabaseManager,
        events: EventLog | None = None,
    ) -> None:
        """``events``: the event log, where backups and restores that end are recorded."""
        self.settings = settings
        self.store = store
        self.backend = backend
        self.services = services
        self.databases = databases
        self.ops = Operations(settings, backend, services, events or EventLog(settings, store))
        self.creates = Creates(settings, store, backend, self.ops)
        self.restores = Restores(settings, backend, databases, self.ops)
        self.recovery = Recovery(store, self.ops, self.creates, self.restores)
        self.moves = DataMoves(settings, store, backend, databases, self.ops)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host this process's backups and restores until cancelled (``Operations.run``)."""
        await self.ops.run(task_status=task_status)

    async def recover_at_start(self) -> None:
        """Resolve backups and restores a dead process left running (the reconciler repeats it)."""
        try:
            await self.recover()
        except AgentHostError:
            log.exception("could not resolve backups and restores left by a dead process")

    # -- helpers ----------------------------------------------------------------------------------

    async def view(self, ts: TenantStore, rec: BackupRecord) -> Backup:
        last = await ts.backups.last_restore(rec.id)
        return Backup(
            id=rec.id,
            kind=rec.kind,
            source=rec.source_name,
            target=rec.target,
            status=rec.status,
            size_bytes=rec.size_bytes,
            error=rec.error,
            created_at=rec.created_at,
            last_restore=None
            if last is None
            else RestoreInfo(
                id=last.id,
                status=last.status,
                into=last.into_name,
                created_new=last.created_new,
                error=last.error,
                created_at=last.created_at,
                finished_at=last.finished_at,
            ),
        )

    # -- reads ------------------------------------------------------------------------------------

    async def list_backups(self, p: Principal, database: str | None, volume: str | None) -> list[Backup]:
        ts = self.store.scoped(p.tenant_id)
        if database is not None and volume is not None:
            raise InvalidInput("pass database or volume, not both")
        kind, name = ("database", database) if database is not None else ("volume", volume)
        recs = await ts.backups.all(kind if name is not None else None, name)  # type: ignore[arg-type]
        return [await self.view(ts, r) for r in recs]

    # -- create -----------------------------------------------------------------------------------

    async def create(
        self,
        p: Principal,
        database: str | None,
        volume: str | None,
        target: BackupTarget | None,
        wait: bool,
        report: Reporter,
    ) -> Backup:
        ts = self.store.scoped(p.tenant_id)
        rec = await self.creates.start(ts, database, volume, target, wait, report)
        return await self.view(ts, await ts.backups.get(rec.id))

    # -- delete -----------------------------------------------------------------------------------

    async def delete(self, p: Principal, backup_id: str) -> Deleted:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.backups.get(backup_id)
        last = await ts.backups.last_restore(rec.id)
        if rec.status == "running" or (last is not None and last.status == "running"):
            raise Conflict(f"backup {rec.id} is in use by a running operation", "wait for it: poll list_backups")
        removed = []
        if rec.snapshot_id:
            repo = await self.ops.repo(ts, rec.target)
            await repo.ensure()
            await repo.forget(rec.snapshot_id)
            removed.append(f"snapshot {rec.snapshot_id[:8]} in the {repo.where}")
        await ts.backups.delete(rec.id)
        removed.append(f"record of backup {rec.id}")
        return Deleted(kind="backup", name=rec.source_name, id=rec.id, removed=removed)

    async def describe_delete(self, p: Principal, backup_id: str) -> str:
        """The question before deleting a backup. Raises: NotFound."""
        rec = await self.store.scoped(p.tenant_id).backups.get(backup_id)
        return (
            f"Delete backup {rec.id} of {rec.kind} {rec.source_name!r} ({rec.created_at:%Y-%m-%d %H:%M} UTC) and its"
            f" snapshot in the {rec.target} target? It can never be restored again. This cannot be undone."
        )

    # -- restore ----------------------------------------------------------------------------------

    async def describe_restore(self, p: Principal, backup_id: str, name: str | None) -> str | None:
        """The question before restoring over existing data, None into a new name. Raises: NotFound."""
        ts = self.store.scoped(p.tenant_id)
        return await self.restores.describe(ts, await ts.backups.get(backup_id), name)

    async def restore(self, p: Principal, backup_id: str, name: str | None, wait: bool, report: Reporter) -> Backup:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.backups.get(backup_id)
        self.ops.check_target(rec.target)
        await self.restores.start(p, ts, rec, name, wait, report)
        return await self.view(ts, await ts.backups.get(rec.id))

    # -- recovery ---------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Resolve operations whose process died: complete if their snapshot exists, failed otherwise."""
        return await self.recovery.run()
