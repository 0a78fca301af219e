"""SSH access to a service or a sandbox: its keys, what ssh_info says, and who the gateway lets in.

A service's keys live in its spec (``ssh_public_keys``), a sandbox's in its record, outside what the
container is made of: adding or removing one never touches the workload. The gateway (``gateway``) asks
``authorize`` at every login and ``still_allowed`` every few seconds while a connection is open, so a
revoked key's sessions end.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..errors import InvalidInput, NotFound, QuotaExceeded
from ..models import Principal, ServiceSpec
from ..services import DeployRequest
from ..settings import Settings
from ..store import Store, TenantStore
from .hostkey import load_host_key
from .keys import fingerprint, normalize_public_key

__all__ = ["AuthorizedKey", "Kind", "SshInfo", "SshManager", "Target"]

log = logging.getLogger(__name__)

# '<service or sandbox>.<tenant>': a name has no dot, so the first one splits.
_USER = re.compile(r"([a-z][a-z0-9-]{0,39})\.([A-Za-z0-9][A-Za-z0-9._-]{0,99})")


class AuthorizedKey(BaseModel):
    fingerprint: str
    type: str
    comment: str | None = None


class SshInfo(BaseModel):
    target: str = Field(description="'service <name>' or 'sandbox <name>'")
    ready: bool = Field(description="the SSH gateway answers now")
    host: str
    port: int
    user: str = Field(description="'<name>.<tenant>': the SSH user name addresses the service or sandbox")
    host_key_fingerprint: str
    known_hosts_line: str
    command: str
    authorized_keys: list[AuthorizedKey] = []
    note: str | None = None


Kind = Literal["service", "sandbox"]


@dataclass(frozen=True)
class Target:
    """Where an authenticated SSH connection lands, and with which key."""

    tenant_id: str
    tenant_name: str
    kind: Kind
    workload_id: str
    name: str
    key_fingerprint: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class _Box:
    """A service or a sandbox, as far as SSH cares."""

    kind: Kind
    id: str
    name: str
    keys: list[str]
    running: bool


async def _load(ts: TenantStore, kind: Kind, ref: str) -> _Box:
    """Raises: NotFound."""
    if kind == "service":
        svc = await ts.services.get(ref)
        return _Box(kind, svc.id, svc.name, svc.spec.ssh_public_keys, svc.desired_state == "running")
    sbx = await ts.sandboxes.get(ref)
    return _Box(kind, sbx.id, sbx.name, sbx.ssh_public_keys, sbx.status == "running")


async def _save(ts: TenantStore, box: _Box, keys: list[str]) -> None:
    if box.kind == "service":
        svc = await ts.services.get(box.id)
        await ts.services.update(box.id, spec=svc.spec.model_copy(update={"ssh_public_keys": keys}))
    else:
        await ts.sandboxes.set_ssh_keys(box.id, keys)


def _admits(box: _Box, key_fingerprint: str) -> bool:
    return box.running and any(fingerprint(k) == key_fingerprint for k in box.keys)


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
    def __init__(self, settings: Settings, store: Store, backend: Backend) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self._locks: dict[str, anyio.Lock] = {}

    def _lock(self, service_id: str) -> anyio.Lock:
        return self._locks.setdefault(service_id, anyio.Lock())

    # -- the ServiceAccess companion: a key given at deploy -------------------------------------------

    def check_spec(self, req: DeployRequest, spec: ServiceSpec) -> ServiceSpec:
        if not req.ssh_public_key:
            return spec
        return spec.model_copy(update={"ssh_public_keys": [normalize_public_key(req.ssh_public_key)]})

    # -- use-cases ------------------------------------------------------------------------------------

    async def info(self, p: Principal, kind: Kind, ref: str) -> SshInfo:
        """Raises: NotFound; InvalidInput when the target has no key."""
        box = await _load(self.store.scoped(p.tenant_id), kind, ref)
        if not box.keys:
            raise InvalidInput(f"{kind} {box.name} has no SSH access", f"add_ssh_key({kind}, public_key) lets a key in")
        return await self._info(p, box)

    async def _info(self, p: Principal, box: _Box) -> SshInfo:
        _, public, fp = load_host_key(self.settings.data_dir, self.store.secrets)
        host, port = self.settings.publish_host, self.settings.ssh_port
        user = f"{box.name}.{p.tenant_name}"
        info = SshInfo(
            target=f"{box.kind} {box.name}",
            ready=await _gateway_answers(host, port),
            host=host,
            port=port,
            user=user,
            host_key_fingerprint=fp,
            known_hosts_line=f"[{host}]:{port} {public}" if port != 22 else f"{host} {public}",
            command=f"ssh -p {port} {user}@{host}",
            authorized_keys=[_authorized(k) for k in box.keys],
        )
        notes = []
        if not info.authorized_keys:
            notes.append("no keys: SSH access is closed")
        if not box.running:
            notes.append(f"{box.kind} {box.name} is not running: no session gets in")
        if not info.ready:
            notes.append("the SSH gateway does not answer: it runs in `agenthost serve`")
        info.note = "; ".join(notes) or None
        return info

    async def add_key(self, p: Principal, kind: Kind, ref: str, public_key: str) -> SshInfo:
        """Raises: InvalidInput for a bad key; NotFound; QuotaExceeded past ssh_max_keys."""
        key = normalize_public_key(public_key)
        ts = self.store.scoped(p.tenant_id)
        box = await _load(ts, kind, ref)
        async with self._lock(box.id):
            box = await _load(ts, kind, box.id)
            if not any(fingerprint(k) == fingerprint(key) for k in box.keys):
                if len(box.keys) >= self.settings.ssh_max_keys:
                    raise QuotaExceeded(
                        f"{kind} {box.name} already has {len(box.keys)} SSH keys",
                        "revoke one you no longer use with add_ssh_key(remove=true)",
                    )
                if kind == "sandbox" and box.running:
                    # An exec prepared for a pooled sandbox's first command waits in it, open to any process of
                    # the sandbox's user: code run over SSH could answer for that command. It goes first.
                    try:
                        await self.backend.discard_prepared_exec(box.id)
                    except (InvalidInput, NotFound) as exc:
                        raise InvalidInput(f"sandbox {box.name} is not running", "create_sandbox a new one") from exc
                await _save(ts, box, [*box.keys, key])
                box = await _load(ts, kind, box.id)
        return await self._info(p, box)

    async def remove_key(self, p: Principal, kind: Kind, ref: str, key: str) -> SshInfo:
        """Revoke a key (by fingerprint or public key); its open sessions end within seconds.

        Raises: InvalidInput; NotFound for an unknown target or key."""
        ts = self.store.scoped(p.tenant_id)
        box = await _load(ts, kind, ref)
        wanted = key.strip() if key.strip().startswith("SHA256:") else None
        if wanted is None:
            try:
                wanted = fingerprint(normalize_public_key(key))
            except InvalidInput as exc:
                raise InvalidInput(
                    "key is neither a SHA256 fingerprint nor a public key", "ssh_info lists the fingerprints"
                ) from exc
        async with self._lock(box.id):
            box = await _load(ts, kind, box.id)
            rest = [k for k in box.keys if fingerprint(k) != wanted]
            if len(rest) == len(box.keys):
                raise NotFound(f"{kind} {box.name} has no SSH key {wanted}", "ssh_info lists the fingerprints")
            await _save(ts, box, rest)
            box = await _load(ts, kind, box.id)
        return await self._info(p, box)

    # -- the gateway's questions ----------------------------------------------------------------------

    async def authorize(self, username: str, key_fingerprint: str) -> Target | None:
        """The target ``username`` addresses when ``key_fingerprint`` is one of its keys, else None (for every
        reason alike: a malformed name, an unknown tenant or target, one that does not run, another key).
        A service and a sandbox of the same name: the one the key belongs to."""
        m = _USER.fullmatch(username)
        if m is None:
            return None
        try:
            tenant = await self.store.tenants.by_name(m[2])
        except NotFound:
            return None
        ts = self.store.scoped(tenant.id)
        kinds: tuple[Kind, ...] = ("service", "sandbox")
        for kind in kinds:
            try:
                box = await _load(ts, kind, m[1])
            except NotFound:
                continue
            if box.name == m[1] and _admits(box, key_fingerprint):
                return Target(tenant.id, tenant.name, box.kind, box.id, box.name, key_fingerprint)
        return None

    async def still_allowed(self, target: Target) -> bool:
        """Whether the target still admits the key (not revoked; the target neither stopped nor deleted)."""
        try:
            box = await _load(self.store.scoped(target.tenant_id), target.kind, target.workload_id)
        except NotFound:
            return False
        return _admits(box, target.key_fingerprint)
