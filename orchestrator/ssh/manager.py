"""SSH access to a service: its keys, what ssh_info says, and who the gateway lets in.

The keys live in the service's spec (``ssh_public_keys``), outside what its container is made of: adding
or removing one never touches the workload. The gateway (``gateway``) asks ``authorize`` at every login
and ``still_allowed`` every few seconds while a connection is open, so a revoked key's sessions end.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, Field

from ..errors import InvalidInput, NotFound, QuotaExceeded
from ..models import Principal, ServiceRecord, ServiceSpec
from ..services import DeployRequest
from ..settings import Settings
from ..store import Store
from .hostkey import load_host_key
from .keys import fingerprint, normalize_public_key

__all__ = ["AuthorizedKey", "SshInfo", "SshManager", "Target"]

log = logging.getLogger(__name__)

# '<service>.<tenant>': a service name has no dot, so the first one splits.
_USER = re.compile(r"([a-z][a-z0-9-]{0,39})\.([A-Za-z0-9][A-Za-z0-9._-]{0,99})")


class AuthorizedKey(BaseModel):
    fingerprint: str
    type: str
    comment: str | None = None


class SshInfo(BaseModel):
    service: str
    ready: bool = Field(description="the SSH gateway answers now")
    host: str
    port: int
    user: str = Field(description="'<service>.<tenant>': the SSH user name addresses the service")
    host_key_fingerprint: str
    known_hosts_line: str
    command: str
    authorized_keys: list[AuthorizedKey] = []
    note: str | None = None


@dataclass(frozen=True)
class Target:
    """Where an authenticated SSH connection lands, and with which key."""

    tenant_id: str
    tenant_name: str
    service_id: str
    service_name: str
    key_fingerprint: str

    @property
    def label(self) -> str:
        return f"service {self.service_name}"


def _authorized(line: str) -> AuthorizedKey:
    parts = line.split(maxsplit=2)
    return AuthorizedKey(fingerprint=fingerprint(line), type=parts[0], comment=parts[2] if len(parts) > 2 else None)


async def _gateway_answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when an SSH server greets on host:port."""
    with anyio.move_on_after(timeout_s):
        try:
            async with await anyio.connect_tcp(host, port) as stream:
                return (await stream.receive(255)).startswith(b"SSH-2.0-")
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
    return False


class SshManager:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._locks: dict[str, anyio.Lock] = {}

    def _lock(self, service_id: str) -> anyio.Lock:
        return self._locks.setdefault(service_id, anyio.Lock())

    # -- the ServiceAccess companion: a key given at deploy -------------------------------------------

    def check_spec(self, req: DeployRequest, spec: ServiceSpec) -> ServiceSpec:
        if not req.ssh_public_key:
            return spec
        return spec.model_copy(update={"ssh_public_keys": [normalize_public_key(req.ssh_public_key)]})

    # -- use-cases ------------------------------------------------------------------------------------

    async def info(self, p: Principal, ref: str) -> SshInfo:
        """Raises: NotFound; InvalidInput when the service has no key."""
        rec = await self.store.scoped(p.tenant_id).services.get(ref)
        if not rec.spec.ssh_public_keys:
            raise InvalidInput(
                f"service {rec.name} has no SSH access", "add_ssh_key(service, public_key) lets a key in"
            )
        return await self._info(p, rec)

    async def _info(self, p: Principal, rec: ServiceRecord) -> SshInfo:
        _, public, fp = load_host_key(self.settings.data_dir, self.store.secrets)
        host, port = self.settings.publish_host, self.settings.ssh_port
        user = f"{rec.name}.{p.tenant_name}"
        info = SshInfo(
            service=rec.name,
            ready=await _gateway_answers(host, port),
            host=host,
            port=port,
            user=user,
            host_key_fingerprint=fp,
            known_hosts_line=f"[{host}]:{port} {public}" if port != 22 else f"{host} {public}",
            command=f"ssh -p {port} {user}@{host}",
            authorized_keys=[_authorized(k) for k in rec.spec.ssh_public_keys],
        )
        notes = []
        if not info.authorized_keys:
            notes.append("no keys: SSH access is closed")
        if rec.desired_state != "running":
            notes.append(f"service {rec.name} is stopped; start_service lets sessions in again")
        if not info.ready:
            notes.append("the SSH gateway does not answer: it runs in `agenthost serve`")
        info.note = "; ".join(notes) or None
        return info

    async def add_key(self, p: Principal, ref: str, public_key: str) -> SshInfo:
        """Raises: InvalidInput for a bad key; NotFound; QuotaExceeded past ssh_max_keys."""
        key = normalize_public_key(public_key)
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        async with self._lock(rec.id):
            rec = await ts.services.get(rec.id)
            keys = rec.spec.ssh_public_keys
            if not any(fingerprint(k) == fingerprint(key) for k in keys):
                if len(keys) >= self.settings.ssh_max_keys:
                    raise QuotaExceeded(
                        f"service {rec.name} already has {len(keys)} SSH keys",
                        "revoke one you no longer use with add_ssh_key(remove=true)",
                    )
                await ts.services.update(rec.id, spec=rec.spec.model_copy(update={"ssh_public_keys": [*keys, key]}))
                rec = await ts.services.get(rec.id)
        return await self._info(p, rec)

    async def remove_key(self, p: Principal, ref: str, key: str) -> SshInfo:
        """Revoke a key (by fingerprint or public key); its open sessions end within seconds.

        Raises: InvalidInput; NotFound for an unknown service or key."""
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        wanted = key.strip() if key.strip().startswith("SHA256:") else None
        if wanted is None:
            try:
                wanted = fingerprint(normalize_public_key(key))
            except InvalidInput as exc:
                raise InvalidInput(
                    "key is neither a SHA256 fingerprint nor a public key", "ssh_info lists the fingerprints"
                ) from exc
        async with self._lock(rec.id):
            rec = await ts.services.get(rec.id)
            rest = [k for k in rec.spec.ssh_public_keys if fingerprint(k) != wanted]
            if len(rest) == len(rec.spec.ssh_public_keys):
                raise NotFound(f"service {rec.name} has no SSH key {wanted}", "ssh_info lists the fingerprints")
            await ts.services.update(rec.id, spec=rec.spec.model_copy(update={"ssh_public_keys": rest}))
            rec = await ts.services.get(rec.id)
        return await self._info(p, rec)

    # -- the gateway's questions ----------------------------------------------------------------------

    async def authorize(self, username: str, key_fingerprint: str) -> Target | None:
        """The target ``username`` addresses when ``key_fingerprint`` is one of its keys, else None (for every
        reason alike: a malformed name, an unknown tenant or service, a stopped service, another key)."""
        m = _USER.fullmatch(username)
        if m is None:
            return None
        try:
            tenant = await self.store.tenants.by_name(m[2])
            rec = await self.store.scoped(tenant.id).services.get(m[1])
        except NotFound:
            return None
        if rec.name != m[1] or not self._admits(rec, key_fingerprint):
            return None
        return Target(tenant.id, tenant.name, rec.id, rec.name, key_fingerprint)

    async def still_allowed(self, target: Target) -> bool:
        """Whether the target still admits the key (not revoked, the service neither stopped nor deleted)."""
        try:
            rec = await self.store.scoped(target.tenant_id).services.get(target.service_id)
        except NotFound:
            return False
        return self._admits(rec, target.key_fingerprint)

    @staticmethod
    def _admits(rec: ServiceRecord, key_fingerprint: str) -> bool:
        return rec.desired_state == "running" and any(
            fingerprint(k) == key_fingerprint for k in rec.spec.ssh_public_keys
        )
