"""Service use-cases: validate → record intent → call the backend → record the outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import anyio

from .backends.base import Backend, VolumeSpec, WorkloadSpec
from .errors import Conflict, ImageNotFound, InvalidInput, QuotaExceeded, RuntimeUnavailable, WorkloadFailed
from .models import Deleted, EnvList, LogOutput, Principal, Service, ServiceRecord, ServiceSpec, untrusted
from .progress import Reporter
from .secrets import mask_secrets
from .service_health import ServiceHealth, service_view
from .service_requests import DeployRequest, UpdateRequest, check_env
from .settings import Settings
from .store import Store, TenantStore

__all__ = ["ServiceEvent", "ServiceManager", "tenant_network", "volume_name"]

_RUNTIME_ALIASES = {"gvisor": "runsc", "sysbox": "sysbox-runc"}


# What just happened to a service's container, for use-cases that keep companions (the SSH sidecar) in step.
ServiceEvent = Literal["running", "stopped", "removing"]


async def _silent(message: str, progress: float | None = None, total: float | None = None) -> None:
    return None


def tenant_network(tenant_id: str) -> str:
    return f"ah-net-{tenant_id}"


def volume_name(tenant_id: str, name: str) -> str:
    return f"ah-{tenant_id}-{name}"


class ServiceManager:
    def __init__(self, settings: Settings, store: Store, backend: Backend) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        # Other use-cases (databases, ssh) contribute env and sidecars through these hooks.
        self.extra_env: list[Callable[[TenantStore, ServiceRecord], Awaitable[dict[str, str]]]] = []
        self.extra_ports: list[Callable[[ServiceRecord], list[int]]] = []
        # Called after a service's container started (or was recreated), stopped, or before it is removed.
        self.on_event: list[Callable[[TenantStore, ServiceRecord, ServiceEvent], Awaitable[None]]] = []
        # Checks and normalisation of the spec of a new service (e.g. its SSH keys), before it is recorded.
        self.spec_checks: list[Callable[[DeployRequest, ServiceSpec], ServiceSpec]] = []
        # ...and the secrets they hand a service, so its logs mask them too.
        self.extra_secrets: list[Callable[[TenantStore, ServiceRecord], Awaitable[list[str]]]] = []
        # Builds: a tenant's build id -> (image, port it exposes). Raises NotFound / InvalidInput.
        self.resolve_build: Callable[[TenantStore, str], Awaitable[tuple[str, int | None]]] | None = None
        # Readiness, crash reports and the circuit breaker; its log tails mask what known_secrets names.
        self.health = ServiceHealth(settings, backend, self.known_secrets)

    async def emit(self, ts: TenantStore, rec: ServiceRecord, event: ServiceEvent) -> None:
        """Tell the lifecycle hooks what just happened to a service's container."""
        for hook in self.on_event:
            await hook(ts, rec, event)

    # -- validation -----------------------------------------------------------------------------

    async def resolve_runtime(self, requested: str | None) -> str:
        runtime = _RUNTIME_ALIASES.get(requested or "", requested or self.settings.default_runtime)
        if runtime == "runc" and not self.settings.allow_runc:
            raise RuntimeUnavailable(
                "runtime 'runc' is disabled on this platform", "omit runtime to get gVisor (runsc), the default"
            )
        if runtime not in {"runsc", "runc", "sysbox-runc"}:
            raise InvalidInput(
                f"unknown runtime {requested!r}", "use 'runsc' (default) or 'sysbox' for Docker-in-Docker"
            )
        present = await self.backend.runtimes()
        if runtime not in present:
            raise RuntimeUnavailable(
                f"runtime {runtime!r} is not installed on this node (present: {', '.join(sorted(present)) or 'none'})"
            )
        return runtime

    async def check_quota(
        self, ts: TenantStore, memory_mb: int, cpus: float, replacing: ServiceSpec | None = None
    ) -> None:
        quotas = (await self.store.tenants.get(ts.tenant_id)).quotas
        count, mem, cpu = await ts.services.usage()
        if replacing is not None:
            count, mem, cpu = count - 1, mem - replacing.memory_mb, cpu - replacing.cpus
        if memory_mb > quotas.max_service_memory_mb:
            raise QuotaExceeded(
                f"memory_mb {memory_mb} is above the per-service limit of {quotas.max_service_memory_mb}"
            )
        if count + 1 > quotas.max_services:
            raise QuotaExceeded(f"the tenant already has {count} of {quotas.max_services} services")
        if mem + memory_mb > quotas.max_memory_mb:
            raise QuotaExceeded(f"memory would reach {mem + memory_mb} MiB, above the quota of {quotas.max_memory_mb}")
        if cpu + cpus > quotas.max_cpus + 1e-9:
            raise QuotaExceeded(f"cpus would reach {cpu + cpus:g}, above the quota of {quotas.max_cpus:g}")

    # -- specs and views ------------------------------------------------------------------------

    async def _env(self, ts: TenantStore, rec: ServiceRecord) -> dict[str, str]:
        env = await ts.env.get_all(rec.id)
        for hook in self.extra_env:
            env.update(await hook(ts, rec))
        return env

    async def known_secrets(self, ts: TenantStore, rec: ServiceRecord) -> list[str]:
        """Values to mask in the service's output: its env and what other use-cases hand it."""
        secrets = list((await self._env(ts, rec)).values())
        for hook in self.extra_secrets:
            secrets += await hook(ts, rec)
        return secrets

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
            ports=([spec.port] if spec.port else []) + [p for hook in self.extra_ports for p in hook(rec)],
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
            labels={"agenthost.name": rec.name},
        )

    async def view(self, ts: TenantStore, rec: ServiceRecord) -> Service:
        rec, st = await self.health.refresh(ts, rec)
        return service_view(rec, st, await ts.env.keys(rec.id))

    # -- use-cases ------------------------------------------------------------------------------

    async def deploy(self, p: Principal, req: DeployRequest, report: Reporter = _silent) -> Service:
        ts = self.store.scoped(p.tenant_id)
        check_env(req.env)
        if req.command is not None and not req.command:
            raise InvalidInput("command is an empty list", "omit it to use the image's own command")
        if await ts.databases.find(req.name) is not None:
            raise Conflict(
                f"a database named {req.name!r} exists, and both would answer to that name on your private network",
                "pick another name for the service",
            )
        image, port = await self._image_of(ts, req)
        runtime = await self.resolve_runtime(req.runtime)
        if not await self.backend.image_exists(image):
            raise ImageNotFound(f"image {image!r} is not on this host")
        memory_mb = req.memory_mb or self.settings.default_memory_mb
        cpus = req.cpus or self.settings.default_cpus
        await self.check_quota(ts, memory_mb, cpus)
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
        )
        if len({v.path for v in req.volumes}) != len(req.volumes):
            raise InvalidInput("two volumes share one mount path", "give each volume its own path")
        for check in self.spec_checks:
            spec = check(req, spec)
        async with self.store.db.transaction() as tx:
            rec = await ts.services.insert(req.name, spec, tx)
            await ts.env.set_many(rec.id, req.env, tx)
        await report(f"recorded service {req.name}; starting container", 0, None)
        created_volumes: list[str] = []
        try:
            existing = set(await self.backend.list_volumes({"agenthost.tenant": p.tenant_id}))
            for v in spec.volumes:
                name = volume_name(p.tenant_id, v.name)
                if name not in existing:
                    await self.backend.ensure_volume(name, {"agenthost.tenant": p.tenant_id})
                    created_volumes.append(name)
            await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._undo(ts, rec, created_volumes)
            raise
        if req.wait:
            rec = await self.health.wait_ready(ts, rec, req.wait_timeout_s, report)
        await self.emit(ts, rec, "running")
        return await self.view(ts, rec)

    async def _image_of(self, ts: TenantStore, req: DeployRequest) -> tuple[str, int | None]:
        """The image to run and its port: given, or from a succeeded build (whose EXPOSE sets the default port)."""
        if (req.image is None) == (req.build_id is None):
            raise InvalidInput(
                "pass exactly one of image and build_id",
                "image runs an image already on this host; build_id runs the image a build_from_git made",
            )
        if req.build_id is None:
            assert req.image is not None
            return req.image, req.port
        if self.resolve_build is None:
            raise InvalidInput("builds are not available on this platform", "pass image instead")
        image, exposed = await self.resolve_build(ts, req.build_id)
        return image, req.port if req.port is not None else exposed

    async def _undo(self, ts: TenantStore, rec: ServiceRecord, volumes: list[str]) -> None:
        try:
            await self.emit(ts, rec, "removing")
            await self.backend.remove_workload(rec.id)
            for name in volumes:
                await self.backend.remove_volume(name)
        finally:
            await ts.services.delete(rec.id)

    async def list_services(self, p: Principal) -> list[Service]:
        ts = self.store.scoped(p.tenant_id)
        return [await self.view(ts, rec) for rec in await ts.services.all()]

    async def get(self, p: Principal, ref: str) -> Service:
        ts = self.store.scoped(p.tenant_id)
        return await self.view(ts, await ts.services.get(ref))

    async def start(self, p: Principal, ref: str, wait: bool = True, report: Reporter = _silent) -> Service:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.services.update(
            rec.id, desired_state="running", status="deploying", last_error=None, breaker_open=False
        )
        rec = await ts.services.get(rec.id)
        await self.backend.ensure_workload(await self.workload_spec(ts, rec))
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
        await self.emit(ts, rec, "stopped")
        return await self.view(ts, await ts.services.get(rec.id))

    async def restart(self, p: Principal, ref: str, wait: bool = True, report: Reporter = _silent) -> Service:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.services.update(
            rec.id, desired_state="running", status="deploying", last_error=None, breaker_open=False
        )
        rec = await ts.services.get(rec.id)
        st = await self.backend.workload_status(rec.id)
        if st.state == "missing" or st.spec_hash != (await self.workload_spec(ts, rec)).spec_hash():
            await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        else:
            st = await self.backend.restart_workload(rec.id)
        await ts.services.update(rec.id, restarts=st.restarts)
        rec = await ts.services.get(rec.id)
        if wait:
            rec = await self.health.wait_ready(ts, rec, None, report)
        await self.emit(ts, rec, "running")
        return await self.view(ts, rec)

    async def redeploy(
        self, ts: TenantStore, rec: ServiceRecord, wait: bool, report: Reporter = _silent
    ) -> ServiceRecord:
        """Apply a changed spec or env: recreate the container when the service should run."""
        if rec.desired_state != "running":
            return rec
        await ts.services.update(rec.id, status="deploying", last_error=None, restarts=0)
        rec = await ts.services.get(rec.id)
        await self.backend.ensure_workload(await self.workload_spec(ts, rec))
        if wait:
            rec = await self.health.wait_ready(ts, rec, None, report)
        await self.emit(ts, rec, "running")
        return rec

    async def update(self, p: Principal, ref: str, req: UpdateRequest, report: Reporter = _silent) -> Service:
        """Change image, command, port, limits or env and redeploy. When the new version does not come up
        (and wait is on), the previous spec and env are restored and redeployed.

        Raises: WorkloadFailed after such a rollback, with the new version's crash report.
        """
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        changes = req.model_dump(exclude_none=True, exclude={"env", "unset_env", "wait", "build_id"})
        if not changes and not req.env and not req.unset_env and req.build_id is None:
            raise InvalidInput("nothing to change", "pass at least one of image, port, command, memory_mb, cpus, env")
        check_env(req.env or {})
        build_id = None if "image" in changes else rec.spec.build_id
        if req.build_id is not None:
            if req.image is not None:
                raise InvalidInput("pass image or build_id, not both", "build_id runs the image a build made")
            changes["image"], _ = await self._image_of(ts, DeployRequest(name=rec.name, build_id=req.build_id))
            build_id = req.build_id
        if "runtime" in changes:
            changes["runtime"] = await self.resolve_runtime(changes["runtime"])
        new_spec = rec.spec.model_validate({**rec.spec.model_dump(), **changes, "build_id": build_id})
        if "image" in changes and not await self.backend.image_exists(new_spec.image):
            raise ImageNotFound(f"image {new_spec.image!r} is not on this host")
        await self.check_quota(ts, new_spec.memory_mb, new_spec.cpus, replacing=rec.spec)
        old_spec, old_env = rec.spec, await ts.env.get_all(rec.id)
        await ts.services.update(rec.id, spec=new_spec)
        if req.env:
            await ts.env.set_many(rec.id, req.env)
        if req.unset_env:
            await ts.env.unset(rec.id, req.unset_env)
        await report(f"updating {rec.name}", None, None)
        updated = await self.redeploy(ts, await ts.services.get(rec.id), req.wait, report)
        if updated.status != "failed" or not req.wait:
            return await self.view(ts, updated)
        failure = updated.last_error or "the new version failed"
        await report(f"{rec.name}: new version failed; restoring the previous one", None, None)
        await ts.services.update(rec.id, spec=old_spec, desired_state="running")
        await ts.env.unset(rec.id, list((await ts.env.get_all(rec.id)).keys()))
        await ts.env.set_many(rec.id, old_env)
        restored = await self.redeploy(ts, await ts.services.get(rec.id), True, report)
        raise WorkloadFailed(
            f"update of {rec.name} rolled back (service is {restored.status} on its previous version): {failure}",
            "fix the new image, command or env and call update_service again",
        )

    async def delete(self, p: Principal, ref: str, keep_volumes: bool = False) -> Deleted:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.services.update(rec.id, desired_state="deleted")
        await self.emit(ts, rec, "removing")
        removed = [f"container of service {rec.name}"] if await self.backend.remove_workload(rec.id) else []
        if not keep_volumes:
            others = {v.name for o in await ts.services.all() if o.id != rec.id for v in o.spec.volumes}
            for v in rec.spec.volumes:
                gone = v.name not in others and await self.backend.remove_volume(volume_name(p.tenant_id, v.name))
                removed += [f"volume {v.name}"] if gone else []
        await ts.services.delete(rec.id)
        removed.append(f"record and env of service {rec.name}")
        return Deleted(kind="service", name=rec.name, id=rec.id, removed=removed)

    async def describe_delete(self, p: Principal, ref: str, keep_volumes: bool) -> str:
        """What delete would remove, for the confirmation prompt."""
        rec = await self.store.scoped(p.tenant_id).services.get(ref)
        vols = (
            ""
            if keep_volumes or not rec.spec.volumes
            else f" and its volumes {', '.join(v.name for v in rec.spec.volumes)}"
        )
        return f"Delete service {rec.name!r} (container, env vars{vols})? This cannot be undone."

    async def logs(self, p: Principal, ref: str, tail: int, since_s: int | None) -> LogOutput:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        since = None
        if since_s is not None:
            from datetime import UTC, datetime, timedelta

            since = datetime.now(UTC) - timedelta(seconds=since_s)
        lines = [ln.text async for ln in self.backend.logs(rec.id, tail=tail, since=since)]
        text = mask_secrets("\n".join(lines), await self.known_secrets(ts, rec))
        truncated = len(text.encode()) > self.settings.log_max_bytes
        if truncated:
            text = text.encode()[-self.settings.log_max_bytes :].decode("utf-8", "ignore")
        return LogOutput(service=rec.name, lines=len(lines), truncated=truncated, output=untrusted(text))

    async def set_env(self, p: Principal, ref: str, values: dict[str, str], wait: bool, report: Reporter) -> EnvList:
        if not values:
            raise InvalidInput("vars is empty", "pass at least one KEY: value")
        check_env(values)
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        await ts.env.set_many(rec.id, values)
        await self.redeploy(ts, rec, wait, report)
        return await self.list_env(p, rec.id, reveal=False)

    async def unset_env(self, p: Principal, ref: str, keys: list[str], wait: bool, report: Reporter) -> EnvList:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        missing = sorted(set(keys) - set(await ts.env.keys(rec.id)))
        if missing:
            raise InvalidInput(f"service {rec.name} has no env vars {', '.join(missing)}", "list_env shows the names")
        await ts.env.unset(rec.id, keys)
        await self.redeploy(ts, rec, wait, report)
        return await self.list_env(p, rec.id, reveal=False)

    async def list_env(self, p: Principal, ref: str, reveal: bool) -> EnvList:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        values = await ts.env.get_all(rec.id)
        return EnvList(service=rec.name, vars=values if reveal else dict.fromkeys(values, "****"), revealed=reveal)
