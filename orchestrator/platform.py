"""The platform: settings, store, backend and use-cases, opened once per process.

This is the one place that wires the use-cases together: each gets the collaborators it needs at
construction, here, and none adds itself to another's lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio

from .backends.base import Backend
from .backends.building import Builder
from .backends.docker import DockerBackend, DockerBuilder, DockerEngine
from .backends.docker.net import EgressFilter
from .backends.threaded import ThreadBudget
from .backups import BackupManager
from .builds import BuildManager
from .databases import DatabaseLinks, DatabaseManager
from .events import EventLog
from .exec import ExecManager
from .fairness import TenantSlots, on_behalf_of
from .housekeeping import Housekeeping
from .images import ImagePolicy
from .ingress import DomainManager, IngressManager
from .nodes import Nodes
from .oauth import OAuthGrants
from .sandboxes import SandboxManager, WarmPool
from .secrets import SecretBox, load_master_key
from .services import Reconciler, RevisionLog, ServiceDiagnosis, ServiceManager, ServiceRevisions, VolumeManager
from .settings import Settings
from .ssh import SshGateway, SshManager
from .status import Status
from .store import Store
from .tenants import TenantManager

__all__ = ["Platform", "docker_engine", "host_egress", "instance_id", "make_backend", "make_builder"]


def instance_id(master_key: bytes) -> str:
    """A stable id of this platform (its data dir), derived from the master key without revealing it."""
    return hashlib.sha256(b"agenthost-instance\0" + master_key).hexdigest()[:12]


def host_egress(settings: Settings) -> EgressFilter:
    """The host's egress filter (iptables) as the operator configured it."""
    return EgressFilter(settings.egress_allow, [settings.tenant_network_pool], settings.allow_unfiltered_egress)


def docker_engine(settings: Settings, instance: str, threads: ThreadBudget | None = None) -> DockerEngine:
    """The control-plane host's Docker engine as the operator configured it."""
    return DockerEngine(
        settings.docker_host,
        instance,
        settings.tenant_network_pool,
        settings.tenant_network_prefix,
        host_egress(settings),
        threads,
    )


def make_backend(settings: Settings, instance: str) -> Backend:
    threads = ThreadBudget(settings.backend_max_threads, settings.tenant_max_backend_threads)
    if settings.backend == "nomad":
        from .backends.nomad import NomadBackend

        nomad: Backend = NomadBackend.from_settings(settings, instance, threads)
        return nomad
    return DockerBackend(docker_engine(settings, instance, threads), settings.publish_host)


def make_builder(settings: Settings, backend: Backend, instance: str) -> Builder:
    """Images are built by the control-plane host's Docker engine, whichever backend runs workloads: on Docker
    the backend's own engine (one client, one thread budget), on Nomad one of the builder's."""
    if isinstance(backend, DockerBackend):
        return DockerBuilder(backend.engine)
    return DockerBuilder(docker_engine(settings, instance))


class Platform:
    def __init__(self, settings: Settings, store: Store, backend: Backend, builder: Builder | None = None) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.builder = builder or make_builder(settings, backend, "builder")
        self.tenants = TenantManager(settings, store)
        self.oauth = OAuthGrants(settings, store, self.tenants)
        self.calls = TenantSlots("tool calls", "tenant_max_inflight", settings.tenant_max_inflight)
        # One event log for every use-case (databases reach it through the services' manager).
        self.events = EventLog(settings, store)
        # Workloads on Nomad run on nodes that pull their images from the registry, not from the builder's engine.
        self.builds = BuildManager(
            settings, store, self.builder, pulls_from_registry=settings.backend != "docker", events=self.events
        )
        images = ImagePolicy(settings, self.builds.pins)  # a tenant's builds are among the images it may run
        self.ssh = SshManager(settings, store, backend)
        # Where the builder's engine is the one that runs workloads (Docker), revisions record image ids.
        digest_of = self._image_id if settings.backend == "docker" else None
        revisions = RevisionLog(store.db, settings.service_revisions_kept, digest_of)
        self.ingress = IngressManager(settings, store, backend)
        self.domains = DomainManager(settings, store, self.ingress)
        self.services = ServiceManager(
            settings, store, backend, images, DatabaseLinks(), self.ssh, self.events, revisions, self.ingress
        )
        self.revisions = ServiceRevisions(self.services)
        self.volumes = VolumeManager(store, backend)
        self.diagnosis = ServiceDiagnosis(self.services)
        self.databases = DatabaseManager(settings, store, backend, self.services)
        self.backups = BackupManager(settings, store, backend, self.services, self.databases, self.events)
        self.pool = WarmPool(settings, store, backend)
        self.sandboxes = SandboxManager(settings, store, backend, self.pool, images, self.events)
        self.exec = ExecManager(settings, store, backend, self.services, self.sandboxes)
        self.ssh_gateway = SshGateway(settings, store, backend, self.ssh, self.events)  # served by `agenthost serve`
        self.housekeeping = Housekeeping(settings, store, self.builds)
        self.nodes = Nodes(backend, self.backups.moves)
        self.reconciler = Reconciler(
            store,
            self.services,
            settings.reconcile_interval_s,
            known_ids=[
                self.databases.known_ids,
                self.pool.known_ids,
                self.sandboxes.known_ids,
            ],
            passes=[
                # Tenants off lost nodes before anything else is repaired: repairs place workloads on their node.
                self.nodes.relocate,
                # Then backups: an abandoned restore hands its stopped database back before databases are checked.
                self.backups.recover,
                self.backups.moves.recover,  # a move a dead process left: its database goes back to its data
                self.databases.reconcile,
                self.ingress.reconcile,  # after the services' repairs: routes to the workloads they recreated
                self.housekeeping.expire_rows,
                self.housekeeping.cap_build_logs,
                # Networks last: the passes before may have finished deletes of a tenant's last workloads.
                self.services.networks.collect,
            ],
        )
        self.status = Status(
            settings, store, backend, self.builder, self.builds.log_files, lambda: self.reconciler.passes_finished
        )

    async def _image_id(self, image: str) -> str | None:
        info = await self.builder.image_info(image)
        return info.id if info is not None else None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        background: bool = False,
        backend: Backend | None = None,
        builder: Builder | None = None,
    ) -> AsyncIterator[Platform]:
        """Open the data dir. With ``background`` the reconciler runs until the platform closes.

        ``backend`` and ``builder``: engines to use instead of the configured ones (in-memory doubles in the
        unit tests); the platform closes them as its own."""
        master = load_master_key(settings.master_key_path)
        store = await Store.open(settings.db_path, SecretBox(master))
        instance = instance_id(master)
        backend = backend or make_backend(settings, instance)
        platform = cls(settings, store, backend, builder or make_builder(settings, backend, instance))
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(platform.builds.run)
                await tg.start(platform.backups.run)
                if background:
                    tg.start_soon(platform.backups.recover_at_start)
                    tg.start_soon(platform.reconciler.run)
                    tg.start_soon(platform.sandboxes.run)
                yield platform
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await platform.builder.close()
                await backend.close()
                await store.close()

    @contextmanager
    def tenant_call(self, tenant_id: str) -> Iterator[None]:
        """One tool call of ``tenant_id``: it counts against the tenant's calls in flight, and the engine
        calls it makes against the tenant's share of the backend's threads.

        Raises: Busy when the tenant has tenant_max_inflight calls running already.
        """
        with self.calls.hold(tenant_id), on_behalf_of(tenant_id):
            yield
