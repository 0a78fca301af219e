"""SSH access to a service: an sshd sidecar beside the service's container (``sidecar``), and its keys.

The sidecar joins the service's network namespace and mounts the service's volumes, so the SSH port
(2222) is published by the *service* container: it is part of the service's ports while the service
has keys, and adding the first key (or removing the last) recreates the service's container. We chose
that over a sidecar on its own network sharing only volumes because a session that cannot reach
``localhost:<port>`` of the service it was opened for is of little use for debugging, and the sidecar
then needs no egress or tenant network.

sshd runs as the unprivileged user ``app`` (uid 10001), key-only, with root login refused. The host key
is an ed25519 key generated per service by the platform and kept encrypted with the tenant's key, so it
survives restarts; the authorized keys live in the service's spec.
"""

from __future__ import annotations

import logging
import time

import anyio
from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..errors import InvalidInput, NotFound, QuotaExceeded
from ..labels import sidecar_id
from ..models import Principal, ServiceRecord
from ..progress import Reporter, silent
from ..services import ServiceManager
from ..settings import Settings
from ..store import Store, TenantStore
from .keys import fingerprint, generate_host_key, normalize_public_key
from .sidecar import SSH_PORT, SshSidecars

__all__ = ["SSH_USER", "AuthorizedKey", "SshInfo", "SshManager"]

log = logging.getLogger(__name__)

SSH_USER = "app"


class AuthorizedKey(BaseModel):
    fingerprint: str
    type: str
    comment: str | None = None


class SshInfo(BaseModel):
    service: str
    ready: bool = Field(description="sshd answers now")
    host: str | None = None
    port: int | None = None
    user: str = SSH_USER
    host_key_fingerprint: str | None = None
    known_hosts_line: str | None = None
    command: str | None = None
    authorized_keys: list[AuthorizedKey] = []
    note: str | None = None


def _authorized(line: str) -> AuthorizedKey:
    parts = line.split(maxsplit=2)
    return AuthorizedKey(fingerprint=fingerprint(line), type=parts[0], comment=parts[2] if len(parts) > 2 else None)


async def _sshd_answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when an SSH server greets on host:port (the port publisher accepts even with nothing behind it)."""
    with anyio.move_on_after(timeout_s):
        try:
            async with await anyio.connect_tcp(host, port) as stream:
                return (await stream.receive(255)).startswith(b"SSH-2.0-")
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
    return False


class SshManager:
    def __init__(
        self, settings: Settings, store: Store, backend: Backend, services: ServiceManager, sidecars: SshSidecars
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.services = services
        self.sidecars = sidecars

    # -- use-cases ------------------------------------------------------------------------------------

    async def info(self, p: Principal, ref: str) -> SshInfo:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        if not rec.spec.ssh_public_keys:
            raise InvalidInput(
                f"service {rec.name} has no SSH access", "add_ssh_key(service, public_key) gives it an SSH endpoint"
            )
        return await self._info(ts, rec)

    async def _info(self, ts: TenantStore, rec: ServiceRecord, wait_s: float = 0.0) -> SshInfo:
        keys = [_authorized(k) for k in rec.spec.ssh_public_keys]
        if not keys:
            return SshInfo(service=rec.name, ready=False, note="no keys: SSH access is closed")
        _, public, fp = await ts.ssh_host_keys.get_or_create(rec.id, generate_host_key)
        info = SshInfo(service=rec.name, ready=False, host_key_fingerprint=fp, authorized_keys=keys)
        if rec.desired_state != "running":
            info.note = f"service {rec.name} is stopped; start_service brings SSH back"
            return info
        deadline = time.monotonic() + wait_s
        while True:
            st = await self.backend.workload_status(rec.id)
            ep = st.endpoints.get(SSH_PORT)
            if ep is not None:
                info.host, info.port = ep.host, ep.port
                info.ready = await _sshd_answers(ep.host, ep.port)
            if info.ready or time.monotonic() >= deadline:
                break
            await anyio.sleep(0.25)
        if info.host is not None:
            info.known_hosts_line = f"[{info.host}]:{info.port} {public}"
            info.command = f"ssh -p {info.port} {SSH_USER}@{info.host}"
        if not info.ready:
            info.note = "sshd is not answering yet (starting, or the service is not running); call ssh_info again"
        return info

    async def add_key(self, p: Principal, ref: str, public_key: str, wait: bool, report: Reporter = silent) -> SshInfo:
        key = normalize_public_key(public_key)
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        async with self.sidecars.lock(rec.id):
            rec = await ts.services.get(rec.id)
            keys = rec.spec.ssh_public_keys
            if any(fingerprint(k) == fingerprint(key) for k in keys):
                return await self._info(ts, rec, self.settings.wait_timeout_s if wait else 0.0)
            if len(keys) >= self.settings.ssh_max_keys:
                raise QuotaExceeded(
                    f"service {rec.name} already has {len(keys)} SSH keys",
                    "revoke one you no longer use with add_ssh_key(remove=true)",
                )
            self.sidecars.check_port(rec.spec)
            await ts.services.update(rec.id, spec=rec.spec.model_copy(update={"ssh_public_keys": [*keys, key]}))
            rec = await ts.services.get(rec.id)
        if not keys:
            await report(f"publishing the SSH port of {rec.name}: its container is recreated", 0, None)
            rec = await self.services.redeploy(ts, rec, wait, report)  # emits 'running', which starts the sidecar
        else:
            await self.sidecars.sync(ts, rec)
        return await self._info(ts, rec, self.settings.wait_timeout_s if wait else 0.0)

    async def remove_key(self, p: Principal, ref: str, key: str, wait: bool, report: Reporter = silent) -> SshInfo:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        async with self.sidecars.lock(rec.id):
            rec = await ts.services.get(rec.id)
            wanted = key.strip() if key.strip().startswith("SHA256:") else None
            if wanted is None:
                try:
                    wanted = fingerprint(normalize_public_key(key))
                except InvalidInput as exc:
                    raise InvalidInput(
                        "key is neither a SHA256 fingerprint nor a public key", "ssh_info lists the fingerprints"
                    ) from exc
            rest = [k for k in rec.spec.ssh_public_keys if fingerprint(k) != wanted]
            if len(rest) == len(rec.spec.ssh_public_keys):
                raise NotFound(f"service {rec.name} has no SSH key {wanted}", "ssh_info lists the fingerprints")
            await ts.services.update(rec.id, spec=rec.spec.model_copy(update={"ssh_public_keys": rest}))
            rec = await ts.services.get(rec.id)
        if rest:
            await self.sidecars.sync(ts, rec)  # a new sidecar with the remaining keys; sessions of the removed key end
        else:
            await self.backend.remove_workload(sidecar_id(rec.id))
            await report(f"closing the SSH port of {rec.name}: its container is recreated", 0, None)
            rec = await self.services.redeploy(ts, rec, wait, report)
        return await self._info(ts, rec)
