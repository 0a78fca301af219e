"""What every backup and restore needs besides the data: who runs it, how it runs past a tool's
bounded wait, where it stages files, and how the services of a volume are paused for a consistent copy.

An operation row names its process (``owners.owner_token``). Services are recorded as paused *before* they are stopped,
so whichever process finishes the operation — or recovers it after a crash — starts them again.

While the row runs it locks its volume (``BackupRepo.check_free``): deploy, start, restart, update, delete and exec of
what mounts it are refused, in every process. A service marked to run just before the row was written is paused with
the others; ``check_idle`` then proves with the engine that nothing that can mount the volume runs.

Each operation stages its files in ``<backup_staging_dir>/<op id>``: a directory only root can reach, outside every
tenant-writable path. restic writes nowhere else.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
from anyio.abc import TaskGroup

from ..backends.base import Backend, ExecSpec
from ..databases.engines import DUMP_DIR, ENGINES
from ..errors import AgentHostError, Conflict, InvalidInput, NotFound
from ..events import EventLog
from ..labels import L_TENANT, volume_name
from ..models import BackupTarget, DatabaseRecord, EventType, Principal
from ..owners import owner_token
from ..progress import Reporter
from ..services import ServiceManager
from ..settings import Settings
from ..store import TenantStore
from ..store.backups import BackupRecord, Table
from .remote import RemoteRestic
from .restic import ResticRepo
from .sources import remove_dump, volume_dir

__all__ = ["Operations", "staged_file"]

log = logging.getLogger(__name__)


def _system(tenant_id: str) -> Principal:
    return Principal(tenant_id=tenant_id, tenant_name="", role="member", key_id="agenthost")


class _Relay:
    """Progress from background work reaches the caller only while the caller still waits."""

    def __init__(self, report: Reporter) -> None:
        self._report = report
        self.active = True

    async def __call__(self, message: str, progress: float | None = None, total: float | None = None) -> None:
        if self.active:
            await self._report(message, progress, total)


class Operations:
    def __init__(self, settings: Settings, backend: Backend, services: ServiceManager, events: EventLog) -> None:
        self.settings = settings
        self.backend = backend
        self.services = services
        self.events = events
        self.wait_timeout_s = settings.wait_timeout_s
        self.owner = owner_token()
        self._tasks: TaskGroup | None = None
        self._repos_known_to_exist: set[str] = set()
        self.remote = RemoteRestic(settings, backend)

    async def note(self, ts: TenantStore, rec: BackupRecord, type_: EventType, cause: str) -> None:
        """Record what became of a backup, or of a restore from it, in the event log."""
        await self.events.record(ts, "backup", rec.id, rec.source_name, type_, cause)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host this process's operations past a tool's bounded wait, until cancelled (they end as failed)."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            task_status.started()
            await anyio.sleep_forever()

    def check_target(self, target: BackupTarget) -> None:
        """Raises: InvalidInput for a local repository where volumes live on the cluster's nodes (restic runs
        there, beside the data, and reaches only S3)."""
        if not self.backend.local_volumes and target == "local":
            raise InvalidInput(
                f"on the {self.backend.name} backend backups run on the node that holds the data, which cannot"
                " reach the control plane's local repository",
                "pass target='s3' (the operator sets AGENTHOST_BACKUP_TARGET=s3 and AGENTHOST_BACKUP_S3_*)",
            )

    async def repo(self, ts: TenantStore, target: BackupTarget) -> ResticRepo:
        password = await ts.backups.repo_password(target)
        return ResticRepo(self.settings, ts.tenant_id, target, password, self._repos_known_to_exist)

    async def volume(self, ts: TenantStore, name: str) -> str:
        """The engine's name of a tenant's volume. Raises: NotFound."""
        engine_name = volume_name(ts.tenant_id, name)
        if engine_name not in await self.backend.list_volumes({L_TENANT: ts.tenant_id}):
            raise NotFound(
                f"no volume named {name!r}", "volumes come from deploy_service(volumes=[...]); get_service lists them"
            )
        return engine_name

    # -- staging ----------------------------------------------------------------------------------

    def _staging(self, op_id: str) -> Path:
        return self.settings.backup_staging_dir / op_id

    async def stage(self, op_id: str) -> Path:
        """A fresh directory for one operation's files, only root's, outside every volume.

        Raises: AgentHostError when the staging directory is not a directory of the control plane's user."""
        top, folder = self.settings.backup_staging_dir, self._staging(op_id)

        def make() -> Path:
            top.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = top.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                raise AgentHostError(
                    f"the backup staging directory {top} is not a directory owned by the control plane's user",
                    "move it away; the platform makes a new one",
                )
            top.chmod(0o700)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
            return folder

        return await anyio.to_thread.run_sync(make)

    async def unstage(self, op_id: str) -> None:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(self._staging(op_id), ignore_errors=True))

    async def remove_dump_dir(self, db: DatabaseRecord, op_id: str) -> None:
        if not self.backend.local_volumes:  # the engine's own user removes what it wrote, on its node
            argv = ["rm", "-rf", "--", f"{ENGINES['postgres'].data_path}/{DUMP_DIR}/{op_id}"]
            try:
                await self.backend.exec(db.id, ExecSpec(argv, timeout_s=60))
            except AgentHostError as exc:
                log.warning("could not remove the dump of %s from %s: %s", op_id, db.name, exc)
            return
        try:
            mount = await volume_dir(self.backend, db.spec.volume)
        except AgentHostError:
            return
        await anyio.to_thread.run_sync(remove_dump, mount, op_id)

    # -- the services of a volume -----------------------------------------------------------------

    async def users(self, ts: TenantStore, volume: str) -> list[str]:
        """Ids of the running services that mount a volume."""
        return [
            s.id
            for s in await ts.services.all()
            if s.desired_state == "running" and any(v.name == volume for v in s.spec.volumes)
        ]

    async def pause(self, ts: TenantStore, table: Table, op_id: str, volume: str, report: Reporter) -> list[str]:
        ids = await self.users(ts, volume)
        await ts.backups.set_paused(table, op_id, ids)  # recorded first, so a crash still brings them back
        for sid in ids:
            await report(f"stopping service {(await ts.services.get(sid)).name} for a consistent copy")
            await self.services.stop(_system(ts.tenant_id), sid)
        return ids

    async def check_idle(self, ts: TenantStore, volume: str, what: str) -> None:
        """Raises: Conflict when something that can mount the volume runs (every such workload is in the store:
        the services with the volume in their spec, whatever their state)."""
        for rec in await ts.services.all():
            if any(v.name == volume for v in rec.spec.volumes):
                if (await self.backend.workload_status(rec.id)).state in ("running", "restarting"):
                    raise Conflict(
                        f"service {rec.name} runs on volume {volume} while a {what} of it is under way",
                        f"stop_service {rec.name}, then run the {what} again",
                    )

    async def resume(self, ts: TenantStore, table: Table, op_id: str, ids: list[str], wait: bool = True) -> None:
        for sid in ids:
            try:
                await self.services.start(_system(ts.tenant_id), sid, wait=wait, holder=op_id)
            except NotFound:
                continue
            except AgentHostError:
                log.exception("could not restart service %s after %s", sid, op_id)
        await ts.backups.set_paused(table, op_id, [])

    async def in_background(self, work: Callable[[Reporter], Awaitable[None]], wait: bool, report: Reporter) -> None:
        """Start ``work`` in the platform's task group; wait for it at most the bounded wait."""
        done = anyio.Event()
        relay = _Relay(report)

        async def runner() -> None:
            try:
                await work(relay)
            except Exception:  # the root of a background task: escaping would stop the platform's task group
                log.exception("backup operation crashed")
            finally:
                done.set()

        if self._tasks is None:
            await runner()
        else:
            self._tasks.start_soon(runner)
            if wait:
                with anyio.move_on_after(self.wait_timeout_s):
                    await done.wait()
                if not done.is_set():
                    await report("still running; poll list_backups")
        relay.active = False


def staged_file(folder: Path, name: str, backup_id: str) -> Path:
    """The regular file ``name`` a restore staged. Raises: AgentHostError when the snapshot lacks it."""
    try:
        regular = stat.S_ISREG((folder / name).lstat().st_mode)
    except FileNotFoundError:
        regular = False
    if not regular:
        raise AgentHostError(f"snapshot of {backup_id} holds no {name}")
    return folder / name
