"""The platform: settings, store, backend and use-cases, opened once per process."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from .backends.base import Backend, Builder, NodeInfo
from .backups import BackupManager
from .builds import BuildManager
from .databases import DatabaseManager
from .errors import AgentHostError, BackendUnavailable, InvalidInput, NotFound
from .exec import ExecManager
from .models import ClusterSummary, PlatformStatus, Principal, Usage
from .pool import WarmPool
from .reconciler import Reconciler
from .sandboxes import SandboxManager
from .secrets import SecretBox, load_master_key
from .services import ServiceManager
from .settings import Settings
from .ssh import SshManager
from .store import Store, all_database_records, all_service_records
from .tenants import TenantManager

__all__ = ["Platform", "instance_id", "make_backend", "make_builder"]

log = logging.getLogger(__name__)


def instance_id(master_key: bytes) -> str:
    """A stable id of this platform (its data dir), derived from the master key without revealing it."""
    return hashlib.sha256(b"agenthost-instance\0" + master_key).hexdigest()[:12]


def make_backend(settings: Settings, instance: str) -> Backend:
    if settings.backend == "nomad":
        from .backends.nomad import NomadBackend

        nomad: Backend = NomadBackend.from_settings(settings, instance)
        return nomad
    from .backends.docker import DockerBackend

    return DockerBackend(
        settings.docker_host,
        settings.publish_host,
        instance,
        settings.tenant_network_pool,
        settings.tenant_network_prefix,
    )


def make_builder(settings: Settings, backend: Backend, instance: str) -> Builder:
    """Images are built by the control-plane host's Docker engine, whichever backend runs workloads."""
    if isinstance(backend, Builder):
        return backend
    from .backends.docker import DockerBackend

    return DockerBackend(settings.docker_host, settings.publish_host, instance)


class Platform:
    def __init__(self, settings: Settings, store: Store, backend: Backend, builder: Builder | None = None) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.builder = builder or make_builder(settings, backend, "builder")
        self.tenants = TenantManager(settings, store)
        self.services = ServiceManager(settings, store, backend)
        remote = self.builder is not backend  # type: ignore[comparison-overlap]
        self.builds = BuildManager(settings, store, self.builder, pulls_from_registry=remote)
        self.services.resolve_build = self.builds.image_for_deploy
        self.reconciler = Reconciler(store, self.services, settings.reconcile_interval_s)
        self.databases = DatabaseManager(settings, store, backend, self.services)
        self.backups = BackupManager(settings, store, backend, self.services, self.databases)
        self.services.extra_env.append(self.databases.linked_env)
        self.services.extra_secrets.append(self.databases.linked_secrets)
        self.reconciler.known_ids.append(self.databases.known_ids)
        # Backups first: an abandoned restore hands its stopped database back before databases are checked.
        self.reconciler.passes += [self.backups.recover, self.databases.reconcile]
        self.pool = WarmPool(settings, store, backend)
        self.sandboxes = SandboxManager(settings, store, backend, self.pool)
        self.exec = ExecManager(settings, store, backend, self.services, self.sandboxes)
        self.ssh = SshManager(settings, store, backend, self.services)
        self.reconciler.known_ids += [self.pool.known_ids, self.sandboxes.known_ids, self.ssh.known_ids]
        self.reconciler.passes.append(self.ssh.reconcile)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, background: bool = False) -> AsyncIterator[Platform]:
        """Open the data dir. With ``background`` the reconciler runs until the platform closes."""
        master = load_master_key(settings.master_key_path)
        store = await Store.open(settings.db_path, SecretBox(master))
        instance = instance_id(master)
        backend = make_backend(settings, instance)
        platform = cls(settings, store, backend, make_builder(settings, backend, instance))
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(platform.builds.run)
                platform.backups.attach(tg)
                if background:
                    tg.start_soon(platform._recover_operations)
                    tg.start_soon(platform.reconciler.run)
                    tg.start_soon(platform.pool.run)
                yield platform
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if platform.builder is not backend:  # type: ignore[comparison-overlap]
                    await platform.builder.close()
                await backend.close()
                await store.close()

    async def _recover_operations(self) -> None:
        """Resolve backups and restores a dead process left running (the reconciler repeats it)."""
        try:
            await self.backups.recover()
        except AgentHostError:
            log.exception("could not resolve backups and restores left by a dead process")

    async def list_nodes(self) -> list[NodeInfo]:
        return await self.backend.nodes()

    async def set_node_eligibility(self, node: str, eligible: bool) -> NodeInfo:
        """``node`` is a node id, a unique id prefix, or a name. Raises: NotFound, InvalidInput."""
        nodes = await self.backend.nodes()
        found = [n for n in nodes if n.id == node or n.name == node] or [n for n in nodes if n.id.startswith(node)]
        if not found:
            raise NotFound(f"no node {node!r}", "list_nodes shows the nodes")
        if len(found) > 1:
            raise InvalidInput(f"{node!r} matches {len(found)} nodes", "use the full node id")
        return await self.backend.set_node_eligibility(found[0].id, eligible)

    async def usage(self, p: Principal) -> Usage:
        ts = self.store.scoped(p.tenant_id)
        count, mem, cpus = await ts.services.usage()
        dbs, db_mem, db_cpus = await ts.databases.usage()
        return Usage(
            services=count,
            memory_mb=mem + db_mem,
            cpus=cpus + db_cpus,
            databases=dbs,
            sandboxes=await ts.sandboxes.count(),
        )

    def disk_state(self, path: Path) -> tuple[float | None, str]:
        try:
            du = shutil.disk_usage(path)
        except OSError:
            return None, "ok"
        pct = round(100.0 * du.used / du.total, 1)
        state = (
            "refuse"
            if pct >= self.settings.disk_refuse_percent
            else "warn"
            if pct >= self.settings.disk_warn_percent
            else "ok"
        )
        return pct, state

    async def check_disk(self) -> None:
        """Raises: AgentHostError when the disk is past the refuse watermark."""
        pct, state = self.disk_state(self.settings.data_dir)
        if state == "refuse":
            raise AgentHostError(
                f"disk is {pct}% full; new work is refused above {self.settings.disk_refuse_percent}%",
                "an operator must free disk space",
            )

    async def status(self, p: Principal) -> PlatformStatus:
        """Engine facts for everyone; counts and breakers of the caller's tenant (of all tenants for admins)."""
        if p.is_admin:
            records = await all_service_records(self.store.db)
            counts = {"tenants": await self.store.tenants.count()}
            names = {t.id: t.name for t in await self.store.tenants.all()}
            counts["databases"] = len(await all_database_records(self.store.db))
        else:
            records = await self.store.scoped(p.tenant_id).services.all()
            counts, names = {}, {p.tenant_id: p.tenant_name}
            counts["databases"] = len(await self.store.scoped(p.tenant_id).databases.all())
        counts["services"] = len(records)
        for rec in records:
            counts[f"services_{rec.status}"] = counts.get(f"services_{rec.status}", 0) + 1
        breakers = [f"{names.get(rec.tenant_id, rec.tenant_id)}/{rec.name}" for rec in records if rec.breaker_open]
        base = PlatformStatus(
            backend=self.backend.name,
            reachable=False,
            default_runtime=self.settings.default_runtime,
            counts=counts,
            open_circuit_breakers=breakers,
            read_only=self.settings.read_only,
        )
        try:
            info = await self.backend.info()
            runtimes = await self.backend.runtimes()
            nodes = await self.backend.nodes()
        except BackendUnavailable as exc:
            base.error = exc.message
            base.notes.append("mutating tools fail with backend_unavailable until the engine is back")
            return base
        notes = []
        if "sysbox-runc" not in runtimes:
            notes.append("sysbox-runc is not installed: runtime='sysbox' (Docker-in-Docker) is refused")
        if self.settings.default_runtime not in runtimes:
            notes.append(f"the default runtime {self.settings.default_runtime} is missing: deploys will be refused")
        if not self.settings.allow_runc:
            notes.append("runc is disabled by the operator (allow_runc=false)")
        if info.details.get("egress_enforced") == "false":
            notes.append("iptables is missing: egress policies 'web' and 'none' are refused")
        if info.details.get("egress_note"):
            notes.append(info.details["egress_note"])
        ready = [n for n in nodes if n.status == "ready"]
        cluster = ClusterSummary(
            leader=info.details.get("leader") or None,
            region=info.details.get("region") or None,
            nodes=len(nodes),
            nodes_ready=len(ready),
            nodes_eligible=sum(n.eligible for n in ready),
            drivers=sorted({d for n in ready for d in n.drivers}),
            runtimes=sorted(runtimes),
        )
        if not cluster.nodes_eligible:
            notes.append("no node accepts new work: deploys will fail until one is ready and eligible")
        pct, state = self.disk_state(info.data_root or self.settings.data_dir)
        return base.model_copy(
            update={
                "reachable": True,
                "engine_version": info.version,
                "runtimes": sorted(runtimes),
                "notes": notes,
                "disk_used_percent": pct,
                "disk_state": state,
                "cluster": cluster,
            }
        )
