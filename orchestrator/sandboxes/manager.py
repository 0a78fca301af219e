"""Sandboxes: ephemeral isolated containers for agents to run code in, served from the warm pool.

A request that matches a pooled shape (image, network, default memory and CPUs) takes a pre-started
container in one transaction that also checks the quotas (the count of sandboxes, and the tenant's
memory and CPUs, which sandboxes share with services and databases) and records the sandbox; anything
else is checked and recorded the same way, then started cold. Either way the sandbox has a deadline
(``ttl_s``) after which the pool loop reaps it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import anyio
from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..errors import AgentHostError, Conflict, ImageNotFound, InvalidInput, NotFound, RuntimeUnavailable
from ..events import EventLog
from ..images import ImagePolicy
from ..models import NAME_PATTERN, Deleted, Principal
from ..quotas import check_workload, workloads
from ..settings import Settings
from ..store import SandboxRecord, Store, TenantStore, all_sandbox_records
from ..store.sandboxes import new_sandbox_id
from .pool import SandboxShape, WarmPool, sandbox_spec

__all__ = ["Network", "Sandbox", "SandboxList", "SandboxManager", "SandboxRequest"]

log = logging.getLogger(__name__)

Network = Literal["none", "egress"]


class SandboxRequest(BaseModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    image: str | None = Field(None, min_length=1, max_length=256)
    memory_mb: int | None = Field(None, ge=32, le=16384)
    cpus: float | None = Field(None, gt=0, le=16)
    network: Network = "none"
    ttl_s: int | None = Field(None, ge=10)


class Sandbox(BaseModel):
    id: str
    name: str
    image: str
    network: Network
    memory_mb: int
    cpus: float
    status: Literal["creating", "running", "deleting"]
    from_pool: bool
    expires_at: datetime


class SandboxList(BaseModel):
    sandboxes: list[Sandbox]


def _view(rec: SandboxRecord) -> Sandbox:
    return Sandbox(**rec.model_dump(exclude={"tenant_id", "created_at"}))


class SandboxManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        backend: Backend,
        pool: WarmPool,
        images: ImagePolicy | None = None,
        events: EventLog | None = None,
    ) -> None:
        """``images``: which images tenants may run (without it, images by reference only); ``events``: the
        event log."""
        self.settings = settings
        self.store = store
        self.backend = backend
        self.pool = pool
        self.images = images or ImagePolicy(settings)
        self.events = events or EventLog(settings, store)

    async def run(self) -> None:
        """The pool's loop: reap expired sandboxes and top the pool up, every reap interval or when woken."""
        while True:
            try:
                await self.reap()
                await self.pool.refill()
            except AgentHostError as exc:
                log.warning("sandbox pool pass failed: %s", exc)
            await self.pool.idle()

    async def create(self, p: Principal, req: SandboxRequest) -> Sandbox:
        s = self.settings
        ttl = req.ttl_s or s.sandbox_default_ttl_s
        if ttl > s.sandbox_max_ttl_s:
            raise InvalidInput(f"ttl_s {ttl} is above the maximum of {s.sandbox_max_ttl_s}", "ask for less time")
        ts = self.store.scoped(p.tenant_id)
        shape = SandboxShape(
            await self.images.allowed(ts, req.image) if req.image is not None else s.default_sandbox_image,
            req.network,
            req.memory_mb or s.sandbox_memory_mb,
            req.cpus or s.sandbox_cpus,
        )
        pooled = self.pool.shape_for(shape.image, shape.network, shape.memory_mb, shape.cpus)
        if pooled is not None:
            await self.store.pool.record_demand(pooled.key)
            self.pool.hold()
        if pooled is None:
            # The checks a pooled container already passed when it was started.
            if "runsc" not in await self.backend.runtimes():
                raise RuntimeUnavailable("sandboxes need gVisor (runsc), which this node lacks")
            if not await self.backend.image_exists(shape.image):
                raise ImageNotFound(f"image {shape.image!r} is not on this host")
        expires = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(timespec="milliseconds")
        while True:
            async with self.store.db.transaction() as tx:
                quotas = (await self.store.tenants.get(p.tenant_id, tx)).quotas
                check_workload(quotas, await workloads(ts, tx), "sandbox", shape.memory_mb, shape.cpus)
                claimed = await self.pool.claim(tx, pooled.key) if pooled else None
                left = await self.store.pool.ready(pooled.key, tx) if pooled and claimed else 0
                sandbox_id = claimed or new_sandbox_id()
                rec = await ts.sandboxes.insert(
                    tx,
                    sandbox_id=sandbox_id,
                    name=req.name or sandbox_id.replace("_", "-"),
                    image=shape.image,
                    network=shape.network,
                    memory_mb=shape.memory_mb,
                    cpus=shape.cpus,
                    status="running" if claimed else "creating",
                    from_pool=claimed is not None,
                    expires_at=expires,
                )
            if claimed is None:
                if pooled is not None:
                    self.pool.wake()  # the first request of a shape warms its pool
                break
            if (await self.backend.workload_status(claimed)).state == "running":
                await self.events.record(ts, "sandbox", rec.id, rec.name, "deployed", f"{shape.image}, warm pool")
                if not left:  # else the hold's end brings the refill (WarmPool.hold)
                    self.pool.wake()
                return _view(rec)
            # The pooled container died while it waited (an engine restart): drop it and try again.
            log.warning("pooled sandbox container %s was not running; discarding it", claimed)
            self.pool.wake()
            await self._remove(ts, rec)
        try:
            await self.backend.ensure_workload(sandbox_spec(s, rec.id, p.tenant_id, shape))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._remove(ts, rec)
            raise
        await ts.sandboxes.set_status(rec.id, "running")
        await self.events.record(ts, "sandbox", rec.id, rec.name, "deployed", f"image {shape.image}")
        return _view(await ts.sandboxes.get(rec.id))

    async def _remove(self, ts: TenantStore, rec: SandboxRecord) -> bool:
        try:
            return await self.backend.remove_workload(rec.id)
        finally:
            await ts.sandboxes.delete(rec.id)

    async def list(self, p: Principal) -> list[Sandbox]:
        return [_view(r) for r in await self.store.scoped(p.tenant_id).sandboxes.all()]

    async def get(self, p: Principal, ref: str) -> SandboxRecord:
        """Raises: NotFound."""
        return await self.store.scoped(p.tenant_id).sandboxes.get(ref)

    async def view(self, p: Principal, ref: str) -> Sandbox:
        """Raises: NotFound."""
        return _view(await self.get(p, ref))

    async def extend(self, p: Principal, ref: str, ttl_s: int) -> Sandbox:
        """Let a running sandbox live ``ttl_s`` seconds from now.

        Raises: InvalidInput past the operator's maximum TTL; NotFound; Conflict when it is not running (being
        created, or expired and being reaped)."""
        limit = self.settings.sandbox_max_ttl_s
        if ttl_s > limit:
            raise InvalidInput(f"ttl_s {ttl_s} is above the maximum of {limit}", f"pass ttl_s of at most {limit}")
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.sandboxes.get(ref)
        expires = (datetime.now(UTC) + timedelta(seconds=ttl_s)).isoformat(timespec="milliseconds")
        if not await ts.sandboxes.extend(rec.id, expires):
            raise Conflict(
                f"sandbox {rec.name!r} is {rec.status} and cannot be extended"
                + (" (its time ran out)" if rec.expires_at <= datetime.now(UTC) else ""),
                "create_sandbox a new one, or wait until it is running (get_sandbox)",
            )
        return _view(await ts.sandboxes.get(rec.id))

    async def delete(self, p: Principal, ref: str) -> Deleted:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.sandboxes.get(ref)
        await ts.sandboxes.set_status(rec.id, "deleting")
        had_container = await self._remove(ts, rec)
        await self.events.record(ts, "sandbox", rec.id, rec.name, "deleted", "delete_sandbox")
        removed = ["container and workspace of sandbox " + rec.name] if had_container else []
        return Deleted(kind="sandbox", name=rec.name, id=rec.id, removed=[*removed, f"record of sandbox {rec.name}"])

    async def reap(self) -> int:
        """Delete expired sandboxes, and creations that died half-way; returns how many went."""
        now = datetime.now(UTC)
        gone = 0
        for rec in await all_sandbox_records(self.store.db):
            expired = rec.expires_at <= now
            stuck = rec.status != "running" and (now - rec.created_at).total_seconds() > 600
            if expired or stuck:
                ts = self.store.scoped(rec.tenant_id)
                try:
                    await self._remove(ts, rec)
                except NotFound:
                    pass
                except AgentHostError as exc:
                    log.warning("could not reap sandbox %s: %s", rec.id, exc)
                    continue
                if expired:
                    await self.events.record(ts, "sandbox", rec.id, rec.name, "deleted", "expired: its ttl_s ran out")
                else:
                    await self.events.record(ts, "sandbox", rec.id, rec.name, "failed", "its creation never finished")
                log.info("reaped sandbox %s (%s)", rec.id, "expired" if expired else "stuck")
                gone += 1
        return gone

    async def known_ids(self) -> set[str]:
        return {r.id for r in await all_sandbox_records(self.store.db)}

    async def count(self, p: Principal) -> int:
        return await self.store.scoped(p.tenant_id).sandboxes.count()
