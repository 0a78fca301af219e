"""Backups and restores of databases and service volumes, in each tenant's restic repository.

Use-cases follow the platform's rule: validate (including that the backup target answers)
→ record the operation → do the work → record the outcome. The work runs in the
platform's task group, so a tool waits for it only as long as ``wait`` allows and the agent
polls ``list_backups`` afterwards. Every operation row names the process doing it; when that
process dies (a crash, a kill), the next platform start or reconcile pass finds the row,
resolves it — a backup whose snapshot reached the repository is complete, anything else
failed — and puts back what the operation had taken down (paused services, a stopped
Redis). No operation stays ``running`` without a live process behind it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .backends.base import Backend
from .backup_ops import Operations
from .backup_sources import (
    PG_DUMP_FILE,
    REDIS_FILE,
    chown_like,
    clear_and_replace,
    dump_postgres,
    restore_postgres,
    save_redis,
    settle_redis_files,
    swap_redis_files,
    volume_dir,
)
from .databases import CreateDatabaseRequest, DatabaseManager
from .db_engines import DUMP_DIR
from .errors import AgentHostError, Conflict, InvalidInput, NotFound, NotSupported, WorkloadFailed
from .models import Backup, BackupTarget, DatabaseRecord, Deleted, Principal, RestoreInfo
from .owners import owner_alive
from .progress import Reporter
from .restic import ResticRepo
from .services import ServiceManager, volume_name
from .settings import Settings
from .store import Store, TenantStore
from .store.backups import BackupRecord, RestoreRecord, running_operations

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
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.services = services
        self.databases = databases
        self.ops = Operations(services, settings.wait_timeout_s)
        self.owner = self.ops.owner

    def attach(self, tasks: TaskGroup) -> None:
        """Run operations in the platform's task group (they end with it, as failed)."""
        self.ops.tasks = tasks

    # -- helpers ----------------------------------------------------------------------------------

    async def repo(self, ts: TenantStore, target: BackupTarget) -> ResticRepo:
        return ResticRepo(self.settings, ts.tenant_id, target, await ts.backups.repo_password(target))

    async def _volume(self, ts: TenantStore, name: str) -> str:
        engine_name = volume_name(ts.tenant_id, name)
        if engine_name not in await self.backend.list_volumes({"agenthost.tenant": ts.tenant_id}):
            raise NotFound(
                f"no volume named {name!r}", "volumes come from deploy_service(volumes=[...]); get_service lists them"
            )
        return engine_name

    async def _conflicts(self, ts: TenantStore, kind: str, name: str) -> None:
        busy = await ts.backups.running_for(name, kind) or await ts.backups.running_restores_into(name)  # type: ignore[arg-type]
        if busy:
            raise Conflict(f"a backup or restore of {kind} {name} is running", "wait for it: poll list_backups")

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

    def _check_backend(self) -> None:
        """Raises: NotSupported where volumes live on other hosts than the control plane (Nomad nodes)."""
        if self.backend.name != "docker":
            raise NotSupported(
                f"backups read volumes on the control plane's host; on the {self.backend.name} backend they live"
                " on the cluster's nodes",
                "dump the data over exec instead (pg_dump, redis-cli --rdb), or run it on a Docker-backend platform",
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
        if (database is None) == (volume is None):
            raise InvalidInput("pass exactly one of database or volume", "e.g. create_backup(database='pg')")
        self._check_backend()
        ts = self.store.scoped(p.tenant_id)
        where: BackupTarget = target or self.settings.backup_target
        meta: dict[str, Any] = {}
        if database is not None:
            db = await ts.databases.get(database)
            st = await self.backend.workload_status(db.id)
            if db.status != "running" or st.state != "running":
                raise InvalidInput(f"database {db.name} is {db.status}, not running", "get_database shows why")
            kind, source, source_id, engine = "database", db.name, db.id, db.engine
            meta["memory_mb"] = db.spec.memory_mb
        else:
            assert volume is not None
            mount = await volume_dir(self.backend, await self._volume(ts, volume))
            st_root = mount.stat()
            kind, source, source_id, engine = "volume", volume, None, None
            meta["root"] = [st_root.st_uid, st_root.st_gid, st_root.st_mode & 0o7777]
        await self._conflicts(ts, kind, source)
        repo = await self.repo(ts, where)
        await report(f"opening the backup repository ({repo.where})")
        await repo.ensure()
        rec = await ts.backups.insert(kind, source, source_id, engine, where, self.owner, meta)  # type: ignore[arg-type]
        await self.ops.in_background(lambda relay: self._backup(ts, rec, repo, relay), wait, report)
        return await self.view(ts, await ts.backups.get(rec.id))

    async def _backup(self, ts: TenantStore, rec: BackupRecord, repo: ResticRepo, report: Reporter) -> None:
        tags = [f"ah:{rec.id}", f"ah-{rec.kind}:{rec.source_name}"]
        timeout = self.settings.backup_timeout_s
        try:
            if rec.kind == "database":
                assert rec.source_id is not None
                db = await ts.databases.get(rec.source_id)
                password = await ts.databases.password(db.id)
                if db.engine == "postgres":
                    await report(f"pg_dump of {db.name}")
                    folder = await dump_postgres(self.backend, db, password, rec.id, timeout)
                else:
                    await report(f"BGSAVE of {db.name}")
                    folder = (await save_redis(self.backend, db, password, self._staging(rec.id), timeout)).parent
                await report(f"writing snapshot to {repo.where}")
                snapshot, size = await repo.backup(folder, tags)
            else:
                engine_volume = volume_name(ts.tenant_id, rec.source_name)
                paused = await self.ops.pause(ts, "backups", rec.id, rec.source_name, report)
                try:
                    await report(f"writing snapshot of volume {rec.source_name} to {repo.where}")
                    snapshot, size = await repo.backup(await volume_dir(self.backend, engine_volume), tags)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.ops.resume(ts, "backups", rec.id, paused)
            await ts.backups.finish(rec.id, "complete", snapshot_id=snapshot, size_bytes=size)
            await report(f"backup {rec.id} complete")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await ts.backups.finish(rec.id, "failed", error="interrupted: the control plane shut down")
            raise
        except Exception as exc:  # background work: nobody above to raise to, so it is recorded
            if not isinstance(exc, AgentHostError):
                log.exception("backup %s crashed", rec.id)
            error = exc.message if isinstance(exc, AgentHostError) else f"{type(exc).__name__}: {exc}"
            await ts.backups.finish(rec.id, "failed", error=error[:4000])
        finally:
            with anyio.CancelScope(shield=True):
                await self._cleanup_backup(ts, rec)

    def _staging(self, op_id: str) -> Path:
        return self.settings.backup_staging_dir / op_id

    async def _cleanup_backup(self, ts: TenantStore, rec: BackupRecord) -> None:
        shutil.rmtree(self._staging(rec.id), ignore_errors=True)
        if rec.engine == "postgres" and rec.source_id is not None:
            db = await ts.databases.find(rec.source_id)
            if db is not None:
                await self._remove_dump_dir(db, rec.id)

    async def _remove_dump_dir(self, db: DatabaseRecord, op_id: str) -> None:
        try:
            mount = await volume_dir(self.backend, db.spec.volume)
        except AgentHostError:
            return
        shutil.rmtree(mount / DUMP_DIR / op_id, ignore_errors=True)

    # -- delete -----------------------------------------------------------------------------------

    async def delete(self, p: Principal, backup_id: str) -> Deleted:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.backups.get(backup_id)
        last = await ts.backups.last_restore(rec.id)
        if rec.status == "running" or (last is not None and last.status == "running"):
            raise Conflict(f"backup {rec.id} is in use by a running operation", "wait for it: poll list_backups")
        removed = []
        if rec.snapshot_id:
            repo = await self.repo(ts, rec.target)
            await repo.ensure()
            await repo.forget(rec.snapshot_id)
            removed.append(f"snapshot {rec.snapshot_id[:8]} in the {repo.where}")
        await ts.backups.delete(rec.id)
        removed.append(f"record of backup {rec.id}")
        return Deleted(kind="backup", name=rec.source_name, id=rec.id, removed=removed)

    async def describe_delete(self, p: Principal, backup_id: str) -> str:
        rec = await self.store.scoped(p.tenant_id).backups.get(backup_id)
        return f"Delete backup {rec.id} of {rec.kind} {rec.source_name!r} ({rec.created_at:%Y-%m-%d %H:%M} UTC)?"

    # -- restore ----------------------------------------------------------------------------------

    async def describe_restore(self, p: Principal, backup_id: str, name: str | None) -> str:
        self._check_backend()
        rec = await self.store.scoped(p.tenant_id).backups.get(backup_id)
        if name is not None:
            return f"Restore backup {rec.id} of {rec.source_name!r} into a new {rec.kind} {name!r}?"
        return (
            f"Restore backup {rec.id} ({rec.created_at:%Y-%m-%d %H:%M} UTC) over {rec.kind} {rec.source_name!r}?"
            " Its current data is REPLACED"
            + (" and the services using the volume stop during the restore." if rec.kind == "volume" else ".")
        )

    async def restore(self, p: Principal, backup_id: str, name: str | None, wait: bool, report: Reporter) -> Backup:
        self._check_backend()
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.backups.get(backup_id)
        if rec.status != "complete" or not rec.snapshot_id:
            raise InvalidInput(f"backup {rec.id} is {rec.status}; only complete backups restore", "list_backups")
        into_id: str | None = None
        if rec.kind == "database":
            if name is None:
                try:
                    db = await ts.databases.get(rec.source_id or "")
                except NotFound as exc:
                    raise NotFound(
                        f"database {rec.source_name} no longer exists",
                        "pass name='...' to restore into a new database",
                    ) from exc
                if db.status != "running":
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
                await self._volume(ts, rec.source_name)
                into = rec.source_name
            else:
                if volume_name(ts.tenant_id, name) in await self.backend.list_volumes(
                    {"agenthost.tenant": ts.tenant_id}
                ):
                    raise Conflict(f"a volume named {name!r} exists", "pick a new name, or omit name")
                into = name
        await self._conflicts(ts, rec.kind, into)
        repo = await self.repo(ts, rec.target)
        await repo.ensure()
        op = await ts.backups.insert_restore(rec.id, into, into_id, name is not None, self.owner)
        await self.ops.in_background(lambda relay: self._restore(p, ts, rec, op, repo, relay), wait, report)
        return await self.view(ts, await ts.backups.get(rec.id))

    async def _restore(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, repo: ResticRepo, report: Reporter
    ) -> None:
        assert rec.snapshot_id is not None
        try:
            if rec.kind == "database":
                await self._restore_database(p, ts, rec, op, repo, report)
            elif op.created_new:
                await report(f"creating volume {op.into_name}")
                engine_volume = volume_name(ts.tenant_id, op.into_name)
                await self.backend.ensure_volume(engine_volume, {"agenthost.tenant": ts.tenant_id})
                mount = await volume_dir(self.backend, engine_volume)
                await repo.restore(rec.snapshot_id, mount)
                if "root" in rec.meta:
                    uid, gid, mode = rec.meta["root"]
                    os.chown(mount, uid, gid)
                    os.chmod(mount, mode)
            else:
                mount = await volume_dir(self.backend, volume_name(ts.tenant_id, op.into_name))
                paused = await self.ops.pause(ts, "restores", op.id, op.into_name, report)
                try:
                    staged = mount / f".ah-restore-{op.id}"
                    await report(f"restoring files into volume {op.into_name}")
                    await repo.restore(rec.snapshot_id, staged)
                    await anyio.to_thread.run_sync(clear_and_replace, mount, staged)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.ops.resume(ts, "restores", op.id, paused)
            await ts.backups.finish_restore(op.id, "complete")
            await report(f"restored {rec.id} into {op.into_name}")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._fail_restore(ts, op.id, "interrupted: the control plane shut down")
            raise
        except Exception as exc:  # background work: nobody above to raise to, so it is recorded
            if not isinstance(exc, AgentHostError):
                log.exception("restore %s crashed", op.id)
            error = exc.message if isinstance(exc, AgentHostError) else f"{type(exc).__name__}: {exc}"
            with anyio.CancelScope(shield=True):
                await self._fail_restore(ts, op.id, error[:4000])
        finally:
            shutil.rmtree(self._staging(op.id), ignore_errors=True)

    async def _restore_database(
        self, p: Principal, ts: TenantStore, rec: BackupRecord, op: RestoreRecord, repo: ResticRepo, report: Reporter
    ) -> None:
        assert rec.snapshot_id is not None and rec.engine is not None
        if op.created_new:
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
            db = await ts.databases.get(created.id)
        else:
            db = await ts.databases.get(op.into_id or "")
        password = await ts.databases.password(db.id)
        mount = await volume_dir(self.backend, db.spec.volume)
        if db.engine == "postgres":
            dumps = mount / DUMP_DIR
            dumps.mkdir(exist_ok=True, mode=0o700)
            chown_like(mount, dumps)
            await report(f"fetching snapshot from {repo.where}")
            await repo.restore(rec.snapshot_id, dumps / op.id)
            chown_like(mount, dumps / op.id)
            if not (dumps / op.id / PG_DUMP_FILE).is_file():
                raise AgentHostError(f"snapshot of {rec.id} holds no {PG_DUMP_FILE}")
            try:
                await report(f"pg_restore into {db.name}")
                await restore_postgres(self.backend, db, password, op.id, self.settings.backup_timeout_s)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._remove_dump_dir(db, op.id)
            return
        staged = self._staging(op.id)
        await report(f"fetching snapshot from {repo.where}")
        await repo.restore(rec.snapshot_id, staged)
        if not (staged / REDIS_FILE).is_file():
            raise AgentHostError(f"snapshot of {rec.id} holds no {REDIS_FILE}")
        await ts.databases.update(db.id, status="restoring")
        try:
            await report(f"stopping {db.name} to load the snapshot")
            await self.backend.stop_workload(db.id)
            await anyio.to_thread.run_sync(swap_redis_files, mount, staged / REDIS_FILE)
        finally:
            with anyio.CancelScope(shield=True):
                await self._start_database(ts, db)
        after = await self.databases.wait_ready(ts, await ts.databases.get(db.id), None, report)
        if after.status != "running":
            raise WorkloadFailed(f"{db.name} did not come back after the restore: {after.last_error}")

    async def _start_database(self, ts: TenantStore, db: DatabaseRecord) -> None:
        await ts.databases.update(db.id, status="creating")
        await self.backend.ensure_workload(self.databases.workload_spec(db, await ts.databases.password(db.id)))

    async def _fail_restore(self, ts: TenantStore, op_id: str, error: str) -> None:
        await ts.backups.finish_restore(op_id, "failed", error)

    # -- recovery ---------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Resolve operations whose process died: complete if their snapshot exists, failed otherwise."""
        counts = {"backups_recovered": 0, "restores_recovered": 0}
        for table, op_id, tenant_id, owner in await running_operations(self.store.db):
            if owner_alive(owner):
                continue
            ts = self.store.scoped(tenant_id)
            if not await ts.backups.claim_abandoned(table, op_id, owner, self.owner):
                continue
            if table == "backups":
                await self._recover_backup(ts, await ts.backups.get(op_id))
                counts["backups_recovered"] += 1
            else:
                await self._recover_restore(ts, await ts.backups.get_restore(op_id))
                counts["restores_recovered"] += 1
        return counts

    async def _recover_backup(self, ts: TenantStore, rec: BackupRecord) -> None:
        snapshot, note = None, ""
        try:
            repo = await self.repo(ts, rec.target)
            await repo.ensure()
            await repo.unlock()
            found = await repo.snapshots(f"ah:{rec.id}")
            snapshot = found[0].id if found else None
        except AgentHostError as exc:
            note = f" (the repository could not be checked: {exc.message})"
        await self._cleanup_backup(ts, rec)
        await self.ops.resume(ts, "backups", rec.id, rec.paused_services, wait=False)
        if snapshot is not None:
            await ts.backups.finish(rec.id, "complete", snapshot_id=snapshot)
        else:
            error = "interrupted: the control plane stopped during the backup; create_backup again" + note
            await ts.backups.finish(rec.id, "failed", error=error)
        log.warning("recovered backup %s of a dead process: %s", rec.id, "complete" if snapshot else "failed")

    async def _recover_restore(self, ts: TenantStore, op: RestoreRecord) -> None:
        db = await ts.databases.find(op.into_id) if op.into_id else None
        if db is not None:
            await self._remove_dump_dir(db, op.id)
            if db.engine == "redis":
                await anyio.to_thread.run_sync(settle_redis_files, await volume_dir(self.backend, db.spec.volume))
            st = await self.backend.workload_status(db.id)
            if db.status == "restoring" or st.state != "running":
                await self._start_database(ts, db)
        elif op.into_id is None:
            try:
                mount = await volume_dir(self.backend, volume_name(ts.tenant_id, op.into_name))
                shutil.rmtree(mount / f".ah-restore-{op.id}", ignore_errors=True)
            except AgentHostError:
                pass
        shutil.rmtree(self._staging(op.id), ignore_errors=True)
        await self.ops.resume(ts, "restores", op.id, op.paused_services, wait=False)
        await self._fail_restore(
            ts,
            op.id,
            "interrupted: the control plane stopped during the restore; the target may be partly"
            " restored: run restore_backup again",
        )
        log.warning("recovered restore %s of a dead process: failed", op.id)
