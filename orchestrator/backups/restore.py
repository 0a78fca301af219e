"""Restores: a backup's snapshot back into its volume or database, or into a new one.

restic restores into the operation's root-only staging directory; the files then cross into the
volume through ``backups.files`` (a volume's services are paused and the volume locked meanwhile), a
Postgres dump is put beside the cluster for pg_restore, a Redis RDB is swapped in while Redis is
stopped. A failed restore into a new volume removes it; into a new database, the database stays
(its record says the restore failed).

Where volumes live on the nodes (Nomad), restic restores on the node of the target's volume instead, into
a fresh directory of that volume (``backups.remote``); a new database or volume is placed on any node with
room and the job follows it there, so a backup restores onto any node. A database whose node was lost
comes back elsewhere either way: into a new one (``restore_backup(name=...)``) or over itself, which first
releases its volume and starts it afresh on its tenant's node (``_rehome``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio

from ..backends.base import Backend
from ..databases import CreateDatabaseRequest, DatabaseManager
from ..databases.engines import DUMP_DIR
from ..errors import AgentHostError, Conflict, InvalidInput, NotFound, WorkloadFailed
from ..labels import L_TENANT, volume_name
from ..models import DatabaseRecord, Principal
from ..progress import Reporter
from ..quotas import check_volumes
from ..services import engine_volumes, volumes_held
from ..settings import Settings
from ..store import TenantStore, Tx
from ..store.backups import BackupRecord, Check, RestoreRecord
from .files import open_root, remove
from .operations import Operations, staged_file
from .remote import RESTORE_DIR
from .restic import ResticRepo
from .sources import (
    PG_DUMP_FILE,
    REDIS_FILE,
    clear_and_replace,
    place_dump,
    restore_postgres,
    settle_redis_files,
    swap_redis_files,
    volume_dir,
)

__all__ = ["Restores"]

log = logging.getLogger(__name__)


class Restores:
    def __init__(self, settings: Settings, backend: Backend, databases: DatabaseManager, ops: Operations) -> None:
        self.settings = settings
        self.backend = backend
        self.databases = databases
        self.ops = ops

    async def describe(self, ts: TenantStore, rec: BackupRecord, name: str | None) -> str | None:
        """The question before a restore over existing data; None for one into a new name, which loses nothing.

        Raises: NotFound (the database or volume it would replace is gone)."""
        if name is not None:
            return None
        when = f"{rec.created_at:%Y-%m-%d %H:%M} UTC"
        if rec.kind == "database":
            db = await self._source_database(ts, rec)
            lost = (await self.backend.workload_status(db.id)).node_lost
            moves = (
                f" Its data is on node {lost}, which cannot run it: it starts afresh on another node." if lost else ""
            )
            return (
                f"Restore backup {rec.id} ({when}) over {db.engine} database {db.name!r}? ALL its current data is"
                f" REPLACED by the backup's; what was written since then is lost.{moves} This cannot be undone."
            )
        await self.ops.volume(ts, rec.source_name)
        users = [s.name for s in await ts.services.all() if any(v.name == rec.source_name for v in s.spec.volumes)]
        stop = f" The services {', '.join(repr(u) for u in users)} stop during the restore." if users else ""
        return (
            f"Restore backup {rec.id} ({when}) over volume {rec.source_name!r}? ALL its current files are REPLACED"
            f" by the backup's; what was written since then is lost.{stop} This cannot be undone."
        )

    @staticmethod
    async def _source_database(ts: TenantStore, rec: BackupRecord) -> DatabaseRecord:
        try:
            return await ts.databases.get(rec.source_id or "")
        except NotFound as exc:
            raise NotFound(
                f"database {rec.source_name} no longer exists", "pass name='...' to restore into a new database"
            ) from exc

    async def start(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, name: str | None, wait: bool, report: Reporter
    ) -> None:
        """Validate, record the restore (locking its target), and run it past the bounded wait.

        Raises: InvalidInput, NotFound, Conflict, QuotaExceeded, BackupTargetUnavailable."""
        if rec.status != "complete" or not rec.snapshot_id:
            raise InvalidInput(f"backup {rec.id} is {rec.status}; only complete backups restore", "list_backups")
        into_id: str | None = None
        check: Check | None = None
        if rec.kind == "database":
            if name is None:
                db = await self._source_database(ts, rec)
                if db.status != "running" and not (await self.backend.workload_status(db.id)).node_lost:
                    raise InvalidInput(f"database {db.name} is {db.status}", "get_database shows why")
                into_id, into = db.id, db.name
            else:
                if await ts.databases.find(name) is not None:
                    raise Conflict(f"a database named {name!r} exists", "pick a new name, or omit name")
                await self.databases.check_quota(
                    ts, int(rec.meta.get("memory_mb", self.settings.default_memory_mb)), self.settings.default_cpus
                )
                into = name
        else:
            if name is None:
                await self.ops.volume(ts, rec.source_name)
                into = rec.source_name
            else:
                engine = await engine_volumes(self.backend, ts.tenant_id)
                if name in engine:
                    raise Conflict(f"a volume named {name!r} exists", "pick a new name, or omit name")
                into = name
                tenants = self.databases.store.tenants

                async def volume_cap(tx: Tx) -> None:  # read where the restore is recorded
                    quotas = (await tenants.get(ts.tenant_id, tx)).quotas
                    check_volumes(quotas, await volumes_held(ts, engine, tx), {name})

                check = volume_cap
        await ts.backups.check_free(rec.kind, [into])  # early; insert_restore checks again, in its transaction
        repo = await self.ops.repo(ts, rec.target)
        await repo.ensure()
        op = await ts.backups.insert_restore(rec, into, into_id, name is not None, self.ops.owner, check)
        await self.ops.in_background(lambda relay: self._restore(p, ts, rec, op, repo, relay), wait, report)

    async def _restore(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, repo: ResticRepo, report: Reporter
    ) -> None:
        assert rec.snapshot_id is not None
        try:
            if not self.backend.local_volumes:
                await self._restore_on_node(p, ts, rec, op, repo, report)
            elif rec.kind == "database":
                await self._restore_database(p, ts, rec, op, repo, report)
            else:
                staged = await self.ops.stage(op.id)
                await report(f"fetching snapshot from {repo.where}")
                await repo.restore(rec.snapshot_id, staged)
                if op.created_new:
                    await self._restore_new_volume(ts, rec, op, staged, report)
                else:
                    mount = await volume_dir(self.backend, volume_name(ts.tenant_id, op.into_name))
                    paused = await self.ops.pause(ts, "restores", op.id, op.into_name, report)
                    try:
                        await self.ops.check_idle(ts, op.into_name, "restore")
                        await report(f"replacing the files of volume {op.into_name}")
                        await anyio.to_thread.run_sync(clear_and_replace, mount, staged)
                        await self.ops.check_idle(ts, op.into_name, "restore")
                    finally:
                        with anyio.CancelScope(shield=True):
                            await self.ops.resume(ts, "restores", op.id, paused)
            await ts.backups.finish_restore(op.id, "complete")
            await self.ops.note(ts, rec, "restored", f"restored into {rec.kind} {op.into_name}")
            await report(f"restored {rec.id} into {op.into_name}")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._fail_restore(ts, op.id, "interrupted: the control plane shut down")
                await self.ops.note(ts, rec, "failed", f"restore into {op.into_name} interrupted")
            raise
        except Exception as exc:  # background work: nobody above to raise to, so it is recorded
            if not isinstance(exc, AgentHostError):
                log.exception("restore %s crashed", op.id)
            error = exc.message if isinstance(exc, AgentHostError) else f"{type(exc).__name__}: {exc}"
            with anyio.CancelScope(shield=True):
                await self._fail_restore(ts, op.id, error[:4000])
                await self.ops.note(ts, rec, "failed", f"restore into {op.into_name} failed: {error}")
        finally:
            with anyio.CancelScope(shield=True):
                await self.ops.unstage(op.id)

    async def _restore_new_volume(
        self, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, staged: Path, report: Reporter
    ) -> None:
        """Fill a new volume from staging; a failed restore removes the volume it made."""
        await report(f"creating volume {op.into_name}")
        engine_volume = volume_name(ts.tenant_id, op.into_name)
        await self.backend.ensure_volume(engine_volume, {L_TENANT: ts.tenant_id})
        try:
            mount = await volume_dir(self.backend, engine_volume)
            root = tuple(rec.meta["root"]) if "root" in rec.meta else None
            await anyio.to_thread.run_sync(clear_and_replace, mount, staged, root)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._remove_new_volume(ts, op)
            raise

    async def _remove_new_volume(self, ts: TenantStore, op: RestoreRecord) -> None:
        try:
            await self.backend.remove_volume(volume_name(ts.tenant_id, op.into_name))
        except AgentHostError as exc:
            log.warning("could not remove volume %s of failed restore %s: %s", op.into_name, op.id, exc)

    async def _restore_on_node(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, repo: ResticRepo, report: Reporter
    ) -> None:
        """restic as a job on the node of the target's volume; a new database or volume is placed on any node
        with room, and the job follows it there."""
        assert rec.snapshot_id is not None
        remote, timeout = self.ops.remote, self.settings.backup_timeout_s
        staged = f"{RESTORE_DIR}{op.id}"
        snapshot = rec.snapshot_id
        if rec.kind == "volume":
            engine_volume = volume_name(ts.tenant_id, op.into_name)
            root = json.dumps(rec.meta.get("root"))
            if op.created_new:
                await report(f"creating volume {op.into_name}")
                await self.backend.ensure_volume(engine_volume, {L_TENANT: ts.tenant_id})
                try:
                    await report(f"restoring the snapshot into volume {op.into_name} on its node")
                    await remote.restore(repo, ts.tenant_id, op.id, engine_volume, staged, snapshot, ["replace", root])
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._remove_new_volume(ts, op)
                    raise
                return
            paused = await self.ops.pause(ts, "restores", op.id, op.into_name, report)
            try:
                await self.ops.check_idle(ts, op.into_name, "restore")
                await report(f"replacing the files of volume {op.into_name} on its node")
                await remote.restore(repo, ts.tenant_id, op.id, engine_volume, staged, snapshot, ["replace", "null"])
                await self.ops.check_idle(ts, op.into_name, "restore")
            finally:
                with anyio.CancelScope(shield=True):
                    await self.ops.resume(ts, "restores", op.id, paused)
            return
        db = await self._target_database(p, ts, rec, op, report)
        await self._rehome(ts, db, report)
        password = (await ts.databases.secrets(db.id)).superuser
        if db.engine == "postgres":
            try:
                await report(f"fetching the snapshot onto the node of {db.name}")
                folder = f"{DUMP_DIR}/{op.id}"
                await remote.restore(repo, ts.tenant_id, op.id, db.spec.volume, folder, snapshot, ["own"])
                await report(f"pg_restore into {db.name}")
                await restore_postgres(self.backend, db, password, op.id, timeout)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.ops.remove_dump_dir(db, op.id)
            return
        await ts.databases.update(db.id, status="restoring")
        try:
            await report(f"stopping {db.name} to load the snapshot")
            await self.backend.stop_workload(db.id)
            await remote.restore(repo, ts.tenant_id, op.id, db.spec.volume, staged, snapshot, ["redis"])
        finally:
            with anyio.CancelScope(shield=True):
                await self._start_database(ts, db)
        after = await self.databases.wait_ready(ts, await ts.databases.get(db.id), None, report)
        if after.status != "running":
            raise WorkloadFailed(f"{db.name} did not come back after the restore: {after.last_error}")

    async def _rehome(self, ts: TenantStore, db: DatabaseRecord, report: Reporter) -> None:
        """A database whose data is on a node that cannot run it (``node_lost``) starts afresh, empty, on its
        tenant's node first: its volume is released there, so the restore that follows fills the new one.
        A node that is only slow keeps its volume (``release_volume`` refuses a ready node).

        Raises: WorkloadFailed when the fresh database does not start."""
        lost = (await self.backend.workload_status(db.id)).node_lost
        if not lost or await self.backend.release_volume(db.spec.volume) is None:
            return
        await report(f"the data of {db.name} is on node {lost}, which cannot run it: starting it afresh elsewhere")
        await self.backend.stop_workload(db.id)
        await self._start_database(ts, db)
        after = await self.databases.wait_ready(ts, await ts.databases.get(db.id), None, report)
        if after.status != "running":
            raise WorkloadFailed(f"{db.name} did not start on another node: {after.last_error}")

    async def _target_database(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, report: Reporter
    ) -> DatabaseRecord:
        """The database a restore fills: the existing one, or a new one made now (wherever it finds room)."""
        assert rec.engine is not None
        if not op.created_new:
            return await ts.databases.get(op.into_id or "")
        await report(f"creating {rec.engine} database {op.into_name}")
        req = CreateDatabaseRequest(
            name=op.into_name,
            engine=rec.engine,
            memory_mb=rec.meta.get("memory_mb"),
            wait=True,
            wait_timeout_s=min(600.0, self.settings.backup_timeout_s),
        )
        created = await self.databases.create(p, req, report)
        await ts.backups.set_restore_target(op.id, created.id)
        if created.status != "running":
            raise WorkloadFailed(f"the new database {op.into_name} did not start: {created.last_error}")
        return await ts.databases.get(created.id)

    async def _restore_database(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, repo: ResticRepo, report: Reporter
    ) -> None:
        assert rec.snapshot_id is not None
        db = await self._target_database(p, ts, rec, op, report)
        password = (await ts.databases.secrets(db.id)).superuser
        mount = await volume_dir(self.backend, db.spec.volume)
        staged = await self.ops.stage(op.id)
        await report(f"fetching snapshot from {repo.where}")
        await repo.restore(rec.snapshot_id, staged)
        if db.engine == "postgres":
            dump = staged_file(staged, PG_DUMP_FILE, rec.id)
            try:
                await anyio.to_thread.run_sync(place_dump, mount, op.id, dump)
                await report(f"pg_restore into {db.name}")
                await restore_postgres(self.backend, db, password, op.id, self.settings.backup_timeout_s)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.ops.remove_dump_dir(db, op.id)
            return
        rdb = staged_file(staged, REDIS_FILE, rec.id)
        await ts.databases.update(db.id, status="restoring")
        try:
            await report(f"stopping {db.name} to load the snapshot")
            await self.backend.stop_workload(db.id)
            await anyio.to_thread.run_sync(swap_redis_files, mount, rdb)
        finally:
            with anyio.CancelScope(shield=True):
                await self._start_database(ts, db)
        after = await self.databases.wait_ready(ts, await ts.databases.get(db.id), None, report)
        if after.status != "running":
            raise WorkloadFailed(f"{db.name} did not come back after the restore: {after.last_error}")

    async def _start_database(self, ts: TenantStore, db: DatabaseRecord) -> None:
        await ts.databases.update(db.id, status="creating")
        await self.backend.ensure_workload(await self.databases.workload_spec(ts, db))

    async def _fail_restore(self, ts: TenantStore, op_id: str, error: str) -> None:
        await ts.backups.finish_restore(op_id, "failed", error)

    # -- recovery ---------------------------------------------------------------------------------

    async def recover(self, ts: TenantStore, op: RestoreRecord) -> None:
        """Finish a restore whose process died: put back what it took down, remove what it made, mark it failed."""
        kind = (await ts.backups.get(op.backup_id)).kind
        db = await ts.databases.find(op.into_id) if op.into_id else None
        if db is not None:
            await self.ops.remove_dump_dir(db, op.id)
            if db.engine == "redis" and self.backend.local_volumes:  # on a node, the next restore settles them
                await anyio.to_thread.run_sync(settle_redis_files, await volume_dir(self.backend, db.spec.volume))
            st = await self.backend.workload_status(db.id)
            if db.status == "restoring" or st.state != "running":
                await self._start_database(ts, db)
        elif kind == "volume" and op.created_new:
            await self._remove_new_volume(ts, op)
        elif kind == "volume" and self.backend.local_volumes:
            try:
                mount = await volume_dir(self.backend, volume_name(ts.tenant_id, op.into_name))
            except AgentHostError:
                mount = None
            if mount is not None:  # where versions before root-owned staging staged a restore

                def drop_legacy() -> None:
                    with open_root(mount) as root:
                        remove(root, f".ah-restore-{op.id}")

                await anyio.to_thread.run_sync(drop_legacy)
        await self.ops.unstage(op.id)
        await self.ops.resume(ts, "restores", op.id, op.paused_services, wait=False)
        await self._fail_restore(
            ts,
            op.id,
            "interrupted: the control plane stopped during the restore; the target may be partly"
            " restored: run restore_backup again",
        )
        log.warning("recovered restore %s of a dead process: failed", op.id)
