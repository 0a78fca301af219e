"""Service use-cases: validate → record intent → call the backend → record the outcome."""

from __future__ import annotations

import anyio

from ..backends.base import Backend, VolumeSpec, WorkloadSpec
from ..errors import Conflict, ImageNotFound, InvalidInput, NotFound, QuotaExceeded
from ..events import EventLog
from ..images import ImagePolicy
from ..labels import L_NAME, L_TENANT, tenant_network, volume_name
from ..models import Deleted, EventType, Principal, ServiceRecord, ServiceSpec
from ..progress import Reporter, silent
from ..quotas import check_volumes, check_workload, workloads
from ..settings import Quotas, Settings
from ..store import Store, TenantStore, Tx
from .companions import ServiceAccess, ServiceEvent, ServiceLinks, ServiceRoutes
from .health import ServiceHealth, service_view
from .logs import LogQuery, ServiceLogs
from .models import EnvList, LogOutput, Service, ServiceDetail, ServiceSummary
from .networks import NetworkCollector
from .requests import DeployRequest, UpdateRequest, check_command, check_env, resolve_runtime
from .revisions import RevisionLog, cause
from .switch import ServiceSwitch
from .update import apply_update
from .volumes import deletion_summary, engine_volumes, volumes_held, volumes_only_of

__all__ = ["ServiceManager"]

_HINT = "fix the values and call again; list_env shows what the service runs with"


class ServiceManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        backend: Backend,
        images: ImagePolicy | None = None,
        links: ServiceLinks | None = None,
        access: ServiceAccess | None = None,
        events: EventLog | None = None,
        revisions: RevisionLog | None = None,
        routes: ServiceRoutes | None = None,
    ) -> None:
        """``images``: which images tenants may run (without it, images by reference only); ``links``,
        ``access`` and ``routes``: what other use-cases add to a service (``companions``); ``events``: the
        event log; ``revisions``: where each change is recorded (without it, images by reference)."""
        self.settings = settings
        self.store = store
        self.backend = backend
        self.images = images or ImagePolicy(settings)
        self.links = links
        self.access = access
        self.events = events or EventLog(settings, store)
        self.revisions = revisions or RevisionLog(store.db, settings.service_revisions_kept)
        self.routes = routes
        # Readiness, crash reports and the circuit breaker; its log tails mask what known_secrets names.
        self.health = ServiceHealth(settings, backend, self.known_secrets, self.events)
        self.log_reader = ServiceLogs(settings, backend, self.known_secrets)
        self.networks = NetworkCollector(store, backend)  # gives a tenant's network back after its last workload
        self.switch = ServiceSwitch(settings, backend, self.health, self.workload_spec, self.emit)

    async def emit(self, ts: TenantStore, rec: ServiceRecord, event: ServiceEvent) -> None:
        """Tell the routes what just happened to a service's container."""
        if self.routes is not None:
            await self.routes.follow(ts, rec, event)

    async def note(self, ts: TenantStore, rec: ServiceRecord, type_: EventType, cause: str) -> None:
        """Record an event of the service in the event log."""
        await self.events.record(ts, "service", rec.id, rec.name, type_, cause)

    async def resolve_runtime(self, requested: str | None) -> str:
        return await resolve_runtime(self.settings, self.backend, requested)

    async def check_quota(
        self, ts: TenantStore, tx: Tx, memory_mb: int, cpus: float, replacing: ServiceSpec | None = None
    ) -> Quotas:
        """Inside the transaction that records the service (or its new spec); returns the tenant's quotas.

        Raises: QuotaExceeded."""
        quotas = (await self.store.tenants.get(ts.tenant_id, tx)).quotas
        was = (replacing.memory_mb, replacing.cpus) if replacing is not None else None
        check_workload(quotas, await workloads(ts, tx), "service", memory_mb, cpus, was)
        return quotas

    async def check_env_count(self, ts: TenantStore, keys: set[str]) -> None:
        """Raises: QuotaExceeded when a service would have more than max_env_vars env vars."""
        limit = (await self.store.tenants.get(ts.tenant_id)).quotas.max_env_vars
        if len(keys) > limit:
            raise QuotaExceeded(
                f"a service may have {limit} env vars; this would give it {len(keys)}",
                "unset_env the ones it no longer needs, or put configuration in a file on a volume",
            )

    # -- specs and views ------------------------------------------------------------------------

    async def _env(self, ts: TenantStore, rec: ServiceRecord) -> dict[str, str]:
        env = await ts.env.get_all(rec.id)
        if self.links is not None:
            env.update(await self.links.env(ts, rec))
        return env

    async def linked_secrets(self, ts: TenantStore, rec: ServiceRecord) -> list[str]:
        """The secrets other use-cases hand the service (linked databases' passwords)."""
        return await self.links.secrets(ts, rec) if self.links is not None else []

    async def known_secrets(self, ts: TenantStore, rec: ServiceRecord) -> list[str]:
        """Values to mask in the service's output: its env and what other use-cases hand it."""
        return list((await self._env(ts, rec)).values()) + await self.linked_secrets(ts, rec)

    async def workload_spec(self, ts: TenantStore, rec: ServiceRecord) -> WorkloadSpec:
        env = await self._env(ts, rec)
        spec = rec.spec
        return WorkloadSpec(
            id=rec.id,
            kind="service",
            tenant_id=rec.tenant_id,
            image=spec.image,
            command=spec.command,
            env=env,
            ports=[spec.port] if spec.port else [],
            volumes=[VolumeSpec(name=volume_name(rec.tenant_id, v.name), path=v.path) for v in spec.volumes],
            memory_mb=spec.memory_mb,
            cpus=spec.cpus,
            pids_limit=self.settings.default_pids_limit,
            runtime=spec.runtime,
            tmpfs={"/tmp": self.settings.tmpfs_size_mb, "/run": 16, "/var/tmp": 16},
            user=spec.user,
            egress=spec.egress,
            network=tenant_network(rec.tenant_id),
            network_aliases=[rec.name],
            health_check=spec.health_check,
            max_restarts=self.settings.crash_limit,
            labels={L_NAME: rec.name},
        )

    async def view(self, ts: TenantStore, rec: ServiceRecord, env_keys: bool = True) -> Service:
        """``env_keys=False``: without the env var names (a summary has none: one query fewer a service)."""
        rec, st = await self.health.refresh(ts, rec)
        url = await self.routes.public_url(ts, rec) if self.routes is not None else None
        return service_view(rec, st, await ts.env.keys(rec.id) if env_keys else [], url)

    # -- use-cases ------------------------------------------------------------------------------

    async def deploy(self, p: Principal, req: DeployRequest, report: Reporter = silent) -> Service:
        ts = self.store.scoped(p.tenant_id)
        check_env(req.env)
        check_command(req.command)
        if await ts.databases.find(req.name) is not None:
            raise Conflict(
                f"a database named {req.name!r} exists, and both would answer to that name on your private network",
                "pick another name for the service",
            )
        image, exposed = await self.images.image_of(ts, req.image, req.build_id)
        port = req.port if req.port is not None else exposed
        runtime = await self.resolve_runtime(req.runtime)
        if not await self.backend.image_exists(image):
            raise ImageNotFound(f"image {image!r} is not on this host")
        memory_mb = req.memory_mb or self.settings.default_memory_mb
        cpus = req.cpus or self.settings.default_cpus
        spec = ServiceSpec(
            image=image,
            build_id=req.build_id,
            port=port,
            command=req.command,
            runtime=runtime,
            memory_mb=memory_mb,
            cpus=cpus,
            user=req.user,
            egress=req.egress,
            volumes=req.volumes,
            health_check=req.health_check,
            public=req.public,
        )
        if len({v.path for v in req.volumes}) != len(req.volumes):
            raise InvalidInput("two volumes share one mount path", "give each volume its own path")
        if self.access is not None:
            spec = self.access.check_spec(req, spec)
        await self.check_env_count(ts, set(req.env))
        # The engine's volume list only matters to a service that mounts one (the volume quota).
        existing = await engine_volumes(self.backend, p.tenant_id) if spec.volumes else set()
        digest = await self.revisions.pin(ts, spec)
        async with self.store.db.transaction() as tx:
            # Quotas are read where the record is written, so concurrent deploys cannot both take the last slot;
            # a backup of a volume starting meanwhile sees the record.
            quotas = await self.check_quota(ts, tx, memory_mb, cpus)
            if spec.volumes:
                check_volumes(quotas, await volumes_held(ts, existing, tx), {v.name for v in spec.volumes})
            await ts.backups.check_free("volume", [v.name for v in spec.volumes], tx)
            rec = await ts.services.insert(req.name, spec, tx)
            await ts.env.set_many(rec.id, req.env, tx)
            await self.revisions.record(ts, tx, rec.id, "deploy", digest)
        await report(f"recorded service {req.name}; starting container", 0, None)
        created_volumes: list[str] = []
        try:
            for v in spec.volumes:
                if v.name not in existing:
                    name = volume_name(p.tenant_id, v.name)
                    await self.backend.ensure_volume(name, {L_TENANT: p.tenant_id})
                    created_volumes.append(name)
            await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._undo(ts, rec, created_volumes)
            raise
        await self.note(ts, rec, "deployed", f"deploy_service: image {image}")
        if req.wait:
            rec = await self.health.wait_ready(ts, rec, req.wait_timeout_s, report)
        await self.emit(ts, rec, "running")
        return await self.view(ts, rec)

    async def _undo(self, ts: TenantStore, rec: ServiceRecord, volumes: list[str]) -> None:
        try:
            await self.emit(ts, rec, "removing")
            await self.backend.remove_workload(rec.id)
            for name in volumes:
                await self.backend.remove_volume(name)
        finally:
            await ts.services.delete(rec.id)
        await self.networks.release(ts.tenant_id)

    async def list_services(self, p: Principal) -> list[ServiceSummary]:
        ts = self.store.scoped(p.tenant_id)
        listed = []
        for rec in await ts.services.all():
            try:
                listed.append(ServiceSummary.of(await self.view(ts, rec, env_keys=False)))
            except NotFound:
                continue  # deleted while the list was made: it is no longer the tenant's
        return listed

    async def get(self, p: Principal, ref: str) -> ServiceDetail:
        """The service with its request counters from the proxy (they read its logs: here only)."""
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        svc = await self.view(ts, rec)
        traffic = await self.routes.traffic(ts, rec) if self.routes is not None else None
        return ServiceDetail(**dict(svc), traffic=traffic)

    async def _mark_running(self, ts: TenantStore, rec: ServiceRecord, holder: str | None) -> ServiceRecord:
        """Raises: Conflict while a backup/restore other than ``holder`` holds a volume (checked in the same tx)."""
        async with self.store.db.transaction() as tx:
            await ts.backups.check_free("volume", [v.name for v in rec.spec.volumes], tx, holder)
            await ts.services.update(
                rec.id, desired_state="running", status="deploying", last_error=None, breaker_open=False, tx=tx
            )
        if rec.breaker_open:
            await self.note(ts, rec, "breaker_closed", "the service was started again")
        return await ts.services.get(rec.id)

    async def start(
        self, p: Principal, ref: str, wait: bool = True, report: Reporter = silent, holder: str | None = None
    ) -> Service:
        """Raises: Conflict while a backup or restore other than ``holder`` (the one resuming it) holds a volume."""
        ts = self.store.scoped(p.tenant_id)
        rec = await self._mark_running(ts, await ts.services.get(ref), holder)
        await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        await self.note(ts, rec, "started", "a restore put it back" if holder else "start_service")
        if wait:
            rec = await self.health.wait_ready(ts, rec, None, report)
        await self.emit(ts, rec, "running")
        return await self.view(ts, rec)

    async def stop(self, p: Principal, ref: str) -> Service:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.services.update(rec.id, desired_state="stopped")
        await self.backend.stop_workload(rec.id)
        await ts.services.update(rec.id, status="stopped")
        await self.note(ts, rec, "stopped", "stop_service")
        await self.emit(ts, rec, "stopped")
        return await self.view(ts, await ts.services.get(rec.id))

    async def restart(self, p: Principal, ref: str, wait: bool = True, report: Reporter = silent) -> Service:
        ts = self.store.scoped(p.tenant_id)
        rec = await self._mark_running(ts, await ts.services.get(ref), None)
        st = await self.backend.workload_status(rec.id)
        if st.state == "missing" or st.spec_hash != (await self.workload_spec(ts, rec)).spec_hash():
            await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        else:
            st = await self.backend.restart_workload(rec.id)
        await ts.services.update(rec.id, restarts=st.restarts)
        rec = await ts.services.get(rec.id)
        await self.note(ts, rec, "restarted", "restart_service")
        if wait:
            rec = await self.health.wait_ready(ts, rec, None, report)
        await self.emit(ts, rec, "running")
        return await self.view(ts, rec)

    async def redeploy(
        self, ts: TenantStore, rec: ServiceRecord, wait: bool, report: Reporter = silent
    ) -> ServiceRecord:
        """Apply a changed spec or env when the service should run: beside the running one (``switch``), else anew."""
        if rec.desired_state != "running":
            return rec
        if wait and await self.switch.applies(rec):
            return await self.switch.replace(ts, rec, report)
        await ts.services.update(rec.id, status="deploying", last_error=None, restarts=0)
        rec = await ts.services.get(rec.id)
        if (st := await self.backend.ensure_workload(await self.workload_spec(ts, rec))).rollout:
            await report(f"{rec.name}: {st.rollout}", None, None)  # a Nomad deployment and its outcome
        if wait:
            rec = await self.health.wait_ready(ts, rec, None, report)
        await self.emit(ts, rec, "running")
        return rec

    async def update(self, p: Principal, ref: str, req: UpdateRequest, report: Reporter = silent) -> Service:
        """Change image, command, port, limits or env and redeploy. When the new version cannot be started,
        or (with wait) does not come up, the previous spec and env are restored and redeployed.

        Raises: WorkloadFailed after such a rollback, with what the engine said or the new version's crash report.
        """
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.backups.check_free("volume", [v.name for v in rec.spec.volumes])
        changes = req.model_dump(exclude_none=True, exclude={"env", "unset_env", "wait", "build_id"})
        if not changes and not req.env and not req.unset_env and req.build_id is None:
            raise InvalidInput("nothing to change", "pass at least one of image, port, command, memory_mb, cpus, env")
        check_command(req.command)
        check_env(req.env or {})
        if req.image is not None or req.build_id is not None:
            changes["image"], _ = await self.images.image_of(ts, req.image, req.build_id)
        build_id = req.build_id if "image" in changes else rec.spec.build_id
        if "runtime" in changes:
            changes["runtime"] = await self.resolve_runtime(changes["runtime"])
        new_spec = rec.spec.model_validate({**rec.spec.model_dump(), **changes, "build_id": build_id})
        if "image" in changes and not await self.backend.image_exists(new_spec.image):
            raise ImageNotFound(f"image {new_spec.image!r} is not on this host")
        if req.env:
            kept = set(await ts.env.keys(rec.id)) - set(req.unset_env or [])
            await self.check_env_count(ts, kept | set(req.env))
        digest = await self.revisions.pin(ts, new_spec)
        what = cause("update", sorted(req.model_dump(exclude_none=True, exclude={"wait"})))
        async with self.revisions.change(ts, rec.id, what, digest) as change:
            # The new limits are written with the check, so concurrent updates cannot both pass it.
            await self.check_quota(ts, change.tx, new_spec.memory_mb, new_spec.cpus, replacing=change.before.spec)
            await ts.services.update(rec.id, spec=new_spec, tx=change.tx)
            await ts.env.set_many(rec.id, req.env or {}, change.tx)
            await ts.env.unset(rec.id, req.unset_env or [], change.tx)
        updated = await apply_update(self, ts, change, req.wait, report, what)
        return await self.view(ts, updated)

    async def delete(self, p: Principal, ref: str, keep_volumes: bool = False) -> Deleted:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.backups.check_free("volume", [v.name for v in rec.spec.volumes])
        await ts.services.update(rec.id, desired_state="deleted")
        await self.emit(ts, rec, "removing")
        await self.switch.forget(rec)
        removed = [f"container of service {rec.name}"] if await self.backend.remove_workload(rec.id) else []
        for name in [] if keep_volumes else await volumes_only_of(ts, rec):
            removed += [f"volume {name}"] if await self.backend.remove_volume(volume_name(p.tenant_id, name)) else []
        await ts.services.delete(rec.id)
        await self.note(ts, rec, "deleted", "delete_service")
        removed.append(f"record and env of service {rec.name}")
        if await self.networks.release(p.tenant_id):
            removed.append("your private network (no service or database is left on it)")
        return Deleted(kind="service", name=rec.name, id=rec.id, removed=removed)

    async def describe_delete(self, p: Principal, ref: str, keep_volumes: bool) -> str:
        """What delete would remove, for the confirmation prompt. Raises: NotFound."""
        ts = self.store.scoped(p.tenant_id)
        return await deletion_summary(ts, await ts.services.get(ref), keep_volumes)

    async def logs(self, p: Principal, ref: str, query: LogQuery, report: Reporter = silent) -> LogOutput:
        ts = self.store.scoped(p.tenant_id)
        return await self.log_reader.read(ts, await ts.services.get(ref), query, report)

    async def set_env(self, p: Principal, ref: str, values: dict[str, str], wait: bool, report: Reporter) -> EnvList:
        if not values:
            raise InvalidInput("vars is empty", "pass at least one KEY: value")
        check_env(values)
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await self.check_env_count(ts, set(await ts.env.keys(rec.id)) | set(values))
        what, digest = cause("set_env", sorted(values)), await self.revisions.pin(ts, rec.spec)
        async with self.revisions.change(ts, rec.id, what, digest) as change:
            await ts.env.set_many(rec.id, values, change.tx)
        await apply_update(self, ts, change, wait, report, f"set_env: {', '.join(sorted(values))}", "set_env", _HINT)
        return await self.list_env(p, rec.id, reveal=False)

    async def unset_env(self, p: Principal, ref: str, keys: list[str], wait: bool, report: Reporter) -> EnvList:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        missing = sorted(set(keys) - set(await ts.env.keys(rec.id)))
        if missing:
            raise InvalidInput(f"service {rec.name} has no env vars {', '.join(missing)}", "list_env shows the names")
        what, digest = cause("unset_env", sorted(keys)), await self.revisions.pin(ts, rec.spec)
        async with self.revisions.change(ts, rec.id, what, digest) as change:
            await ts.env.unset(rec.id, keys, change.tx)
        await apply_update(self, ts, change, wait, report, f"unset_env: {', '.join(sorted(keys))}", "unset_env", _HINT)
        return await self.list_env(p, rec.id, reveal=False)

    async def list_env(self, p: Principal, ref: str, reveal: bool) -> EnvList:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        values = await ts.env.get_all(rec.id)
        return EnvList(service=rec.name, vars=values if reveal else dict.fromkeys(values, "****"), revealed=reveal)
