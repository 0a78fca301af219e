"""Creating a backup: a database dumped while it runs, or a volume copied while its services are stopped,
written to the tenant's restic repository as one snapshot (``sources`` says how each is made consistent)."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ..backends.base import Backend
from ..errors import AgentHostError, InvalidInput
from ..labels import volume_name
from ..models import BackupKind, BackupTarget
from ..progress import Reporter
from ..quotas import check_backups
from ..settings import Settings
from ..store import Store, TenantStore, Tx
from ..store.backups import BackupRecord, Check
from .operations import Operations
from .restic import ResticRepo
from .sources import PG_DUMP_FILE, REDIS_FILE, bgsave, dump_postgres, pg_dump_in_volume, save_redis, volume_dir

__all__ = ["Creates"]

log = logging.getLogger(__name__)


class Creates:
    def __init__(self, settings: Settings, store: Store, backend: Backend, ops: Operations) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.ops = ops

    def _within_caps(self, ts: TenantStore) -> Check:
        """The backup quotas, read in the transaction that records a backup: concurrent calls cannot pass together."""

        async def check(tx: Tx) -> None:
            check_backups((await self.store.tenants.get(ts.tenant_id, tx)).quotas, *await ts.backups.totals(tx))

        return check

    async def start(
        self,
        ts: TenantStore,
        database: str | None,
        volume: str | None,
        target: BackupTarget | None,
        wait: bool,
        report: Reporter,
    ) -> BackupRecord:
        """Validate, record the backup and run it past the bounded wait; returns its record as it started.

        Raises: InvalidInput, NotFound, Conflict, QuotaExceeded, BackupTargetUnavailable."""
        if (database is None) == (volume is None):
            raise InvalidInput("pass exactly one of database or volume", "e.g. create_backup(database='pg')")
        where: BackupTarget = target or self.settings.backup_target
        self.ops.check_target(where)
        meta: dict[str, Any] = {}
        kind: BackupKind
        if database is not None:
            db = await ts.databases.get(database)
            st = await self.backend.workload_status(db.id)
            if db.status != "running" or st.state != "running":
                raise InvalidInput(f"database {db.name} is {db.status}, not running", "get_database shows why")
            kind, source, source_id, engine = "database", db.name, db.id, db.engine
            meta["memory_mb"] = db.spec.memory_mb
        else:
            assert volume is not None
            engine_volume = await self.ops.volume(ts, volume)
            kind, source, source_id, engine = "volume", volume, None, None
            if self.backend.local_volumes:
                st_root = (await volume_dir(self.backend, engine_volume)).lstat()
                meta["root"] = [st_root.st_uid, st_root.st_gid, st_root.st_mode & 0o7777]
        await ts.backups.check_free(kind, [source])  # early; insert checks again, in its transaction
        repo = await self.ops.repo(ts, where)
        await report(f"opening the backup repository ({repo.where})")
        await repo.ensure()
        rec = await ts.backups.insert(
            kind, source, source_id, engine, where, self.ops.owner, meta, self._within_caps(ts)
        )
        await self.ops.in_background(lambda relay: self._backup(ts, rec, repo, relay), wait, report)
        return rec

    async def _backup(self, ts: TenantStore, rec: BackupRecord, repo: ResticRepo, report: Reporter) -> None:
        tags = [f"ah:{rec.id}", f"ah-{rec.kind}:{rec.source_name}"]
        timeout = self.settings.backup_timeout_s
        try:
            if not self.backend.local_volumes:
                snapshot, size = await self._backup_on_node(ts, rec, repo, tags, report)
            elif rec.kind == "database":
                assert rec.source_id is not None
                db = await ts.databases.get(rec.source_id)
                password = (await ts.databases.secrets(db.id)).superuser
                staged = await self.ops.stage(rec.id)
                if db.engine == "postgres":
                    await report(f"pg_dump of {db.name}")
                    await dump_postgres(self.backend, db, password, rec.id, staged, timeout)
                else:
                    await report(f"BGSAVE of {db.name}")
                    await save_redis(self.backend, db, password, staged, timeout)
                await report(f"writing snapshot to {repo.where}")
                snapshot, size = await repo.backup(staged, tags)
            else:
                engine_volume = volume_name(ts.tenant_id, rec.source_name)
                paused = await self.ops.pause(ts, "backups", rec.id, rec.source_name, report)
                try:
                    # restic reads the volume itself (links stay links, files open O_NOFOLLOW): safe only while
                    # nothing of the tenant can change the tree under it, which the lock and this check make sure of.
                    await self.ops.check_idle(ts, rec.source_name, "backup")
                    await report(f"writing snapshot of volume {rec.source_name} to {repo.where}")
                    snapshot, size = await repo.backup(await volume_dir(self.backend, engine_volume), tags)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.ops.resume(ts, "backups", rec.id, paused)
            await ts.backups.finish(rec.id, "complete", snapshot_id=snapshot, size_bytes=size)
            await self.ops.note(ts, rec, "succeeded", f"{rec.kind} {rec.source_name} backed up ({rec.target})")
            await report(f"backup {rec.id} complete")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await ts.backups.finish(rec.id, "failed", error="interrupted: the control plane shut down")
                await self.ops.note(ts, rec, "failed", "interrupted: the control plane shut down")
            raise
        except Exception as exc:  # background work: nobody above to raise to, so it is recorded
            if not isinstance(exc, AgentHostError):
                log.exception("backup %s crashed", rec.id)
            error = exc.message if isinstance(exc, AgentHostError) else f"{type(exc).__name__}: {exc}"
            await ts.backups.finish(rec.id, "failed", error=error[:4000])
            await self.ops.note(ts, rec, "failed", error)
        finally:
            with anyio.CancelScope(shield=True):
                await self.cleanup(ts, rec)

    async def _backup_on_node(
        self, ts: TenantStore, rec: BackupRecord, repo: ResticRepo, tags: list[str], report: Reporter
    ) -> tuple[str, int]:
        """restic as a job on the node that holds the data, which it reads where the engine left it."""
        timeout = self.settings.backup_timeout_s
        if rec.kind == "database":
            assert rec.source_id is not None
            db = await ts.databases.get(rec.source_id)
            password = (await ts.databases.secrets(db.id)).superuser
            if db.engine == "postgres":
                await report(f"pg_dump of {db.name}")
                folder = await pg_dump_in_volume(self.backend, db, password, rec.id, timeout)
                paths = [PG_DUMP_FILE]
            else:
                await report(f"BGSAVE of {db.name}")
                await bgsave(self.backend, db, password, timeout)
                folder, paths = "", [REDIS_FILE]
            await report(f"writing snapshot to {repo.where} from the node of {db.name}")
            snapshot, size, _ = await self.ops.remote.backup(
                repo, ts.tenant_id, rec.id, db.spec.volume, folder, paths, tags
            )
            return snapshot, size
        engine_volume = volume_name(ts.tenant_id, rec.source_name)
        paused = await self.ops.pause(ts, "backups", rec.id, rec.source_name, report)
        try:
            await self.ops.check_idle(ts, rec.source_name, "backup")
            await report(f"writing snapshot of volume {rec.source_name} to {repo.where} from its node")
            snapshot, size, root = await self.ops.remote.backup(
                repo, ts.tenant_id, rec.id, engine_volume, "", ["."], tags
            )
            if root is not None:  # a restore into a new volume gives its root this owner and mode
                await ts.backups.set_meta(rec.id, {**rec.meta, "root": root})
            return snapshot, size
        finally:
            with anyio.CancelScope(shield=True):
                await self.ops.resume(ts, "backups", rec.id, paused)

    async def cleanup(self, ts: TenantStore, rec: BackupRecord) -> None:
        """Remove what a backup staged and the dump it left beside a Postgres cluster."""
        await self.ops.unstage(rec.id)
        if rec.engine == "postgres" and rec.source_id is not None:
            db = await ts.databases.find(rec.source_id)
            if db is not None:
                await self.ops.remove_dump_dir(db, rec.id)
