"""The SSH sidecar of a service, kept in step with it.

The sidecar (image ``image_sshd``: Debian's openssh-server) joins the service's network namespace and
mounts the service's volumes at the same paths, so a session sees the service's files and reaches it on
localhost. Because it has no network of its own, the SSH port (2222) is published by the *service*
container: it is part of the service's ports while the service has keys (``ports``). The sidecar follows
its service (``follow``, called by the ServiceManager, and the reconciler's pass): recreated whenever the
service's container (re)starts (a restart gives it a new network namespace), removed when the service
stops, is deleted or loses its last key.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import anyio

from ..backends.base import Backend, VolumeSpec, WorkloadSpec
from ..errors import AgentHostError, InvalidInput, NotFound
from ..labels import L_NAME, L_PEER_STARTED, L_SERVICE, sidecar_id, volume_name
from ..models import ServiceRecord, ServiceSpec
from ..services import DeployRequest, ServiceEvent
from ..settings import Settings
from ..store import Store, TenantStore, all_service_records
from .keys import generate_host_key, normalize_public_key

__all__ = ["SSH_PORT", "SshSidecars"]

log = logging.getLogger(__name__)

SSH_PORT = 2222


class SshSidecars:
    def __init__(self, settings: Settings, store: Store, backend: Backend) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self._locks: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)

    def lock(self, service_id: str) -> anyio.Lock:
        """Held while a service's keys or its sidecar change."""
        return self._locks[service_id]

    def ports(self, rec: ServiceRecord) -> list[int]:
        return [SSH_PORT] if rec.spec.ssh_public_keys else []

    def check_spec(self, req: DeployRequest, spec: ServiceSpec) -> ServiceSpec:
        if not req.ssh_public_key:
            return spec
        key = normalize_public_key(req.ssh_public_key)
        self.check_port(spec)
        return spec.model_copy(update={"ssh_public_keys": [key]})

    @staticmethod
    def check_port(spec: ServiceSpec) -> None:
        if spec.port == SSH_PORT:
            raise InvalidInput(
                f"port {SSH_PORT} is where the SSH sidecar listens in the service's network",
                "have the service listen on another port to use SSH access",
            )

    async def follow(self, ts: TenantStore, rec: ServiceRecord, event: ServiceEvent) -> None:
        if not rec.spec.ssh_public_keys:
            return
        try:
            if event == "running":
                await self.sync(ts, rec)
            else:
                await self.backend.remove_workload(sidecar_id(rec.id))
        except AgentHostError as exc:
            # The service itself is fine; the reconciler brings the sidecar back on its next pass.
            log.warning("ssh sidecar of %s after %s: %s", rec.id, event, exc)

    async def sync(self, ts: TenantStore, rec: ServiceRecord) -> bool:
        """Make the sidecar match its service: running beside it when it runs and has keys, else gone.

        Returns whether a sidecar should now be running.
        """
        async with self._locks[rec.id]:
            sid = sidecar_id(rec.id)
            if not rec.spec.ssh_public_keys or rec.desired_state != "running":
                await self.backend.remove_workload(sid)
                return False
            if await ts.backups.running_on("volume", [v.name for v in rec.spec.volumes]) is not None:
                await self.backend.remove_workload(sid)  # it mounts the volume a backup or restore holds
                return False
            st = await self.backend.workload_status(rec.id)
            if st.state != "running":
                await self.backend.remove_workload(sid)
                return False
            private_key, _, _ = await ts.ssh_host_keys.get_or_create(rec.id, generate_host_key)
            spec = WorkloadSpec(
                id=sid,
                kind="sidecar",
                tenant_id=rec.tenant_id,
                image=self.settings.image_sshd,
                env={"AH_SSH_HOST_KEY": private_key, "AH_SSH_AUTHORIZED_KEYS": "\n".join(rec.spec.ssh_public_keys)},
                volumes=[VolumeSpec(name=volume_name(rec.tenant_id, v.name), path=v.path) for v in rec.spec.volumes],
                memory_mb=self.settings.ssh_memory_mb,
                cpus=self.settings.ssh_cpus,
                pids_limit=self.settings.default_pids_limit,
                runtime=self.settings.default_runtime,
                user="10001:10001",
                egress=rec.spec.egress,
                share_network_with=rec.id,
                init=True,
                max_restarts=self.settings.crash_limit,
                # A new start of the service means a new network namespace: the sidecar must be recreated in it.
                labels={
                    L_NAME: rec.name,
                    L_SERVICE: rec.id,
                    L_PEER_STARTED: st.started_at.isoformat() if st.started_at else "",
                },
            )
            await self.backend.ensure_workload(spec)
            return True

    async def known_ids(self) -> set[str]:
        return {sidecar_id(r.id) for r in await all_service_records(self.store.db) if r.spec.ssh_public_keys}

    async def reconcile(self) -> dict[str, int]:
        """A reconciler pass: every sidecar follows its service (recreated after a restart, gone when stopped)."""
        running = 0
        for rec in await all_service_records(self.store.db):
            if rec.spec.ssh_public_keys and rec.desired_state != "deleted":
                try:
                    running += await self.sync(self.store.scoped(rec.tenant_id), rec)
                except NotFound:
                    continue  # deleted meanwhile
                except AgentHostError as exc:
                    log.warning("ssh sidecar of %s: %s", rec.id, exc)
        return {"ssh_sidecars": running}
