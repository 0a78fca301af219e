"""Managed Postgres and Redis: validate → record intent → run the workload → record the outcome.

A database is a hardened workload like a service (gVisor, read-only root fs, no
capabilities, memory/CPU/pids limits, the engine's own unprivileged user) with its data on
a named volume. It joins its tenant's private network under its own name, so a linked
service reaches it as ``<name>:<port>``; no other tenant's network has that name or a
route to it. Its port is also published on the host's loopback for operators and tools.
"""

from __future__ import annotations

import secrets as _stdlib_secrets
import time

import anyio
from pydantic import BaseModel, Field

from ..backends.base import Backend, VolumeSpec, WorkloadSpec
from ..errors import Conflict, ImageNotFound, InvalidInput, NotFound
from ..labels import L_DATABASE, L_ENGINE, L_NAME, L_TENANT, database_volume, tenant_network
from ..models import DatabaseRecord, DatabaseSpec, Deleted, Engine, HealthCheck, Principal, ResourceName
from ..progress import Reporter, silent
from ..quotas import check_workload, workloads
from ..services import PassFailures, ServiceManager, still_wanted
from ..services.requests import check_env_key
from ..settings import Settings
from ..store import Store, TenantStore, Tx, all_database_records
from .engines import ENGINES, command_for, connection_url, env_for, postgres_name, redis_user
from .health import DatabaseHealth
from .models import ConnectionInfo, Database, DatabaseLink, LinkResult
from .roles import POSTGRES_ADMIN, REDIS_ADMIN

__all__ = ["CreateDatabaseRequest", "DatabaseManager"]

_RESERVED_NAMES = {"template0", "template1"}
_GRACE_S = 120.0


class CreateDatabaseRequest(BaseModel):
    name: ResourceName
    engine: str
    memory_mb: int | None = Field(None, ge=32, le=65536)
    cpus: float | None = Field(None, gt=0, le=64)
    wait: bool = True
    wait_timeout_s: float | None = Field(None, gt=0, le=600)


class DatabaseManager:
    def __init__(self, settings: Settings, store: Store, backend: Backend, services: ServiceManager) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.services = services
        self.events = services.events  # the platform's one event log
        self.health = DatabaseHealth(settings, backend)

    # -- specs and views ------------------------------------------------------------------------

    async def workload_spec(self, ts: TenantStore, rec: DatabaseRecord) -> WorkloadSpec:
        eng = ENGINES[rec.engine]
        secrets = await ts.databases.secrets(rec.id)
        return WorkloadSpec(
            id=rec.id,
            kind="database",
            tenant_id=rec.tenant_id,
            image=rec.spec.image,
            command=command_for(rec.engine, rec.spec),
            env=env_for(rec.engine, rec.spec, secrets.password, secrets.admin_password),
            ports=[eng.port],
            volumes=[VolumeSpec(name=rec.spec.volume, path=eng.data_path)],
            memory_mb=rec.spec.memory_mb,
            cpus=rec.spec.cpus,
            pids_limit=self.settings.database_pids_limit,
            runtime=rec.spec.runtime,
            read_only_rootfs=True,
            tmpfs={"/tmp": self.settings.tmpfs_size_mb, "/run": 16, "/var/tmp": 16},
            cap_add=[],
            user=eng.user,
            egress="none",
            network=tenant_network(rec.tenant_id),
            network_aliases=[rec.name],
            health_check=HealthCheck(type="tcp"),
            max_restarts=self.settings.crash_limit,
            labels={L_NAME: rec.name, L_ENGINE: rec.engine},
        )

    async def view(self, ts: TenantStore, rec: DatabaseRecord) -> Database:
        rec, st = await self.health.refresh(ts, rec)
        external = None
        ep = st.endpoints.get(rec.spec.port) if st is not None and st.state == "running" else None
        if ep is not None:
            external = connection_url(rec.engine, rec.spec, "****", ep.host, ep.port)
        links = []
        for link in await ts.databases.links_of_database(rec.id):
            try:
                links.append(DatabaseLink(service=(await ts.services.get(link.service_id)).name, env_var=link.env_var))
            except NotFound:
                continue
        return Database(
            id=rec.id,
            name=rec.name,
            engine=rec.engine,
            status=rec.status,
            url=connection_url(rec.engine, rec.spec, "****", rec.name, rec.spec.port),
            external_url=external,
            memory_mb=rec.spec.memory_mb,
            linked_services=links,
            last_error=rec.last_error,
            created_at=rec.created_at,
        )

    # -- validation -----------------------------------------------------------------------------

    async def check_quota(self, ts: TenantStore, memory_mb: int, cpus: float, tx: Tx | None = None) -> None:
        """Inside the transaction that records the database (before it, a check that may be raced: a
        restore's early answer). Raises: QuotaExceeded."""
        quotas = (await self.store.tenants.get(ts.tenant_id, tx)).quotas
        check_workload(quotas, await workloads(ts, tx), "database", memory_mb, cpus)

    # -- use-cases ------------------------------------------------------------------------------

    async def create(self, p: Principal, req: CreateDatabaseRequest, report: Reporter = silent) -> Database:
        if req.engine not in ENGINES:
            raise InvalidInput(f"unknown engine {req.engine!r}", "use engine 'postgres' or 'redis'")
        engine: Engine = "postgres" if req.engine == "postgres" else "redis"
        if req.name in _RESERVED_NAMES:
            raise InvalidInput(f"{req.name!r} is reserved by Postgres", "pick another name")
        ts = self.store.scoped(p.tenant_id)
        if await ts.databases.find(req.name) is not None:
            raise Conflict(f"a database named {req.name!r} already exists", "pick another name or use that database")
        try:
            await ts.services.get(req.name)
            raise Conflict(
                f"a service named {req.name!r} exists, and both would answer to that name on your private network",
                "pick another name for the database",
            )
        except NotFound:
            pass
        runtime = await self.services.resolve_runtime(None)
        eng = ENGINES[engine]
        image = str(getattr(self.settings, eng.image_setting))
        if not await self.backend.image_exists(image):
            raise ImageNotFound(
                f"the {engine} image {image!r} is not on this host",
                f"an operator must run `agenthost images build {engine}` or load the image",
            )
        memory_mb = req.memory_mb or self.settings.default_memory_mb
        cpus = req.cpus or self.settings.default_cpus
        db_id = ts.databases.new_id()
        username = postgres_name(req.name) if engine == "postgres" else redis_user(req.name)
        spec = DatabaseSpec(
            image=image,
            runtime=runtime,
            memory_mb=memory_mb,
            cpus=cpus,
            volume=database_volume(db_id),
            port=eng.port,
            username=username,
            db_name=username if engine == "postgres" else None,
            admin_user=POSTGRES_ADMIN if engine == "postgres" else REDIS_ADMIN,
        )
        passwords = (_stdlib_secrets.token_urlsafe(24), _stdlib_secrets.token_urlsafe(32))
        async with self.store.db.transaction() as tx:
            await self.check_quota(ts, memory_mb, cpus, tx)
            rec = await ts.databases.insert(req.name, engine, spec, passwords, db_id, tx)
        await report(f"recorded database {req.name}; starting {engine}", 0, None)
        try:
            await self.backend.ensure_volume(spec.volume, {L_TENANT: p.tenant_id, L_DATABASE: db_id})
            await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._undo(ts, rec)
            raise
        await self.events.record(ts, "database", rec.id, rec.name, "deployed", f"create_database: {engine}")
        if req.wait:
            rec = await self.wait_ready(ts, rec, req.wait_timeout_s, report)
        return await self.view(ts, rec)

    async def _undo(self, ts: TenantStore, rec: DatabaseRecord) -> None:
        try:
            await self.backend.remove_workload(rec.id)
            await self.backend.remove_volume(rec.spec.volume)
        finally:
            await ts.databases.delete(rec.id)
        await self.services.networks.release(ts.tenant_id)

    async def wait_ready(
        self, ts: TenantStore, rec: DatabaseRecord, timeout_s: float | None, report: Reporter = silent
    ) -> DatabaseRecord:
        """Until it accepts connections (running), crashes (failed) or the bounded wait ends (unchanged)."""
        return await self.health.wait_ready(ts, rec, timeout_s, report)

    async def list_databases(self, p: Principal) -> list[Database]:
        ts = self.store.scoped(p.tenant_id)
        return [await self.view(ts, rec) for rec in await ts.databases.all() if rec.desired_state == "running"]

    async def get(self, p: Principal, ref: str) -> Database:
        ts = self.store.scoped(p.tenant_id)
        return await self.view(ts, await ts.databases.get(ref))

    async def connection(self, p: Principal, ref: str, reveal: bool) -> ConnectionInfo:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.databases.get(ref)
        password = await ts.databases.password(rec.id) if reveal else "****"
        external = None
        st = await self.backend.workload_status(rec.id)
        ep = st.endpoints.get(rec.spec.port) if st.state == "running" else None
        if ep is not None:
            external = connection_url(rec.engine, rec.spec, password, ep.host, ep.port)
        return ConnectionInfo(
            url=connection_url(rec.engine, rec.spec, password, rec.name, rec.spec.port),
            external_url=external,
            env_var=ENGINES[rec.engine].env_var,
            revealed=reveal,
        )

    async def describe_delete(self, p: Principal, ref: str) -> str:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.databases.get(ref)
        linked = [
            f"{(await ts.services.get(link.service_id)).name} ({link.env_var})"
            for link in await ts.databases.links_of_database(rec.id)
        ]
        links = f"; linked services lose their env var and are redeployed: {', '.join(linked)}" if linked else ""
        return (
            f"Delete {rec.engine} database {rec.name!r}: its container, its data volume with ALL its data, and its"
            f" credentials{links}. Backups are kept (delete_backup removes them). This cannot be undone."
        )

    async def delete(self, p: Principal, ref: str) -> Deleted:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.databases.get(ref)
        if await ts.backups.running_for(rec.name, "database") or await ts.backups.running_restores_into(rec.name):
            raise Conflict(f"a backup or restore of {rec.name} is running", "wait for it (list_backups), then delete")
        await ts.databases.update(rec.id, desired_state="deleted")
        removed: list[str] = []
        for link in await ts.databases.links_of_database(rec.id):
            await ts.databases.remove_link(rec.id, link.service_id)
            svc = await ts.services.get(link.service_id)
            await self.services.redeploy(ts, svc, wait=False)
            removed.append(f"env var {link.env_var} of service {svc.name}")
        if await self.backend.remove_workload(rec.id):
            removed.append(f"container of database {rec.name}")
        if await self.backend.remove_volume(rec.spec.volume):
            removed.append(f"data volume of database {rec.name}")
        await ts.databases.delete(rec.id)
        await self.events.record(ts, "database", rec.id, rec.name, "deleted", "delete_database")
        removed.append(f"record and credentials of database {rec.name}")
        if await self.services.networks.release(p.tenant_id):
            removed.append("your private network (no service or database is left on it)")
        return Deleted(kind="database", name=rec.name, id=rec.id, removed=removed)

    async def link(
        self, p: Principal, ref: str, service: str, env_var: str | None, wait: bool, report: Reporter = silent
    ) -> LinkResult:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.databases.get(ref)
        svc = await ts.services.get(service)
        var = env_var or ENGINES[rec.engine].env_var
        check_env_key(var)
        if var in await ts.env.keys(svc.id):
            raise Conflict(
                f"service {svc.name} already has its own env var {var}", "unset_env it first, or pass another env_var"
            )
        await ts.databases.add_link(rec.id, svc.id, var)
        await report(f"linked {rec.name} to {svc.name} as {var}; redeploying {svc.name}", 0, None)
        try:
            svc = await self.services.redeploy(ts, svc, wait, report)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await ts.databases.remove_link(rec.id, svc.id)
            raise
        view = await self.services.view(ts, svc)
        return LinkResult(database=rec.name, service=svc.name, env_var=var, linked=True, service_status=view.status)

    async def unlink(self, p: Principal, ref: str, service: str, wait: bool, report: Reporter = silent) -> LinkResult:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.databases.get(ref)
        svc = await ts.services.get(service)
        links = {link.service_id: link for link in await ts.databases.links_of_database(rec.id)}
        if svc.id not in links:
            raise NotFound(f"database {rec.name} is not linked to service {svc.name}", "get_database lists its links")
        await ts.databases.remove_link(rec.id, svc.id)
        svc = await self.services.redeploy(ts, svc, wait, report)
        view = await self.services.view(ts, svc)
        return LinkResult(
            database=rec.name,
            service=svc.name,
            env_var=links[svc.id].env_var,
            linked=False,
            service_status=view.status,
        )

    # -- the reconciler's ---------------------------------------------------------------------------

    async def known_ids(self) -> set[str]:
        return {rec.id for rec in await all_database_records(self.store.db)}

    async def reconcile(self) -> dict[str, int]:
        """Finish half-done deletes; recreate or restart a database whose container is gone or stopped."""
        counts = {"databases_redeployed": 0, "databases_deleted": 0}
        now = time.time()
        failures = PassFailures()
        for rec in await all_database_records(self.store.db):
            with failures.guard(f"database {rec.id}"):
                await self._repair(rec, now, counts)
        return {**counts, "databases_failed": failures.count}

    async def _repair(self, rec: DatabaseRecord, now: float, counts: dict[str, int]) -> None:
        ts = self.store.scoped(rec.tenant_id)
        if rec.desired_state == "deleted":
            if now - rec.updated_at.timestamp() < _GRACE_S:
                return  # a delete in progress, maybe in another process: its caller reports what it removed
            await self.backend.remove_workload(rec.id)
            await self.backend.remove_volume(rec.spec.volume)
            await ts.databases.delete(rec.id)
            counts["databases_deleted"] += 1
            return
        if rec.status == "restoring" or (rec.status == "creating" and now - rec.updated_at.timestamp() < _GRACE_S):
            return  # a restore or a create is in progress (a dead one is finished by backup recovery)
        st = await self.backend.workload_status(rec.id)
        if st.node_lost:  # its data cannot follow: say so, once (a restore elsewhere brings it back)
            if rec.status != "failed" or rec.last_error != st.error:
                await ts.databases.update(rec.id, status="failed", last_error=st.error)
                await self.events.record(ts, "database", rec.id, rec.name, "failed", st.error or "")
            return
        crashed = st.state == "exited" and st.exit_code not in (0, None) and st.restarts >= self.settings.crash_limit
        if st.state == "missing" or (st.state == "exited" and not crashed):
            await ts.databases.update(rec.id, status="creating")
            await self.backend.ensure_workload(await self.workload_spec(ts, rec))
            if not await still_wanted(ts.databases.get, self.backend, rec.id):
                return
            why = "missing" if st.state == "missing" else f"exited with code {st.exit_code}"
            await self.events.record(ts, "database", rec.id, rec.name, "repaired", f"the container {why}; recreated")
            counts["databases_redeployed"] += 1
        elif crashed and rec.status != "failed":
            await ts.databases.update(rec.id, status="failed", last_error=await self.health.crash_report(ts, rec, st))
            cause = f"exited with code {st.exit_code} after {st.restarts} restarts"
            await self.events.record(ts, "database", rec.id, rec.name, "crashed", cause, st.exit_code)
