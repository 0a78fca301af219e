"""The warm pool: pre-started gVisor containers per image and network, ready to become sandboxes.

A background loop keeps ``sandbox_pool_size`` containers per configured (image, network) and reaps
expired sandboxes. The pool warms on demand: a shape is kept warm once a sandbox of it was asked for,
and drained after ``sandbox_pool_idle_s`` without a request, so a platform whose agents never use
sandboxes runs no idle containers. Bookkeeping lives in SQLite (``sandbox_pool``), not in memory, so several
processes on one data dir share one pool: a slot is reserved (row first, container second) in a
transaction that counts the pool, and a container is claimed by an atomic ``DELETE ... RETURNING``
(see store/sandboxes.py). A pooled container is never given back: a deleted sandbox is removed and
the loop starts a fresh one.

A started container runs ``sandbox_pool_warmup`` once through the ordinary exec before it is marked ready:
under gVisor the first exec in a new sandbox reads the shell and the interpreter through the gofer, about 20 ms
that would otherwise fall on the tenant's first command. It runs before anyone can claim the container, as
the container's own user, and leaves no process behind (the exec ends, or is killed at its deadline).
Then, where the backend can, an exec is started ahead of the first command (``Backend.prepare_exec``): the
engine's exec path, about two thirds of a first exec, is paid before the claim. A container whose backend could
not prepare one is still handed out; its first exec goes through the engine. Only the process that prepared an
exec can use it, so a claim takes one of this process's first (``claim``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import anyio

from ..backends.base import Backend, ExecSpec, WorkloadSpec
from ..errors import AgentHostError
from ..labels import L_POOL, L_TENANT
from ..settings import Settings
from ..store import Store, Tx

__all__ = ["POOL_TENANT", "SandboxShape", "WarmPool", "sandbox_spec"]

log = logging.getLogger(__name__)

POOL_TENANT = "pool"  # the tenant label of pooled containers: they belong to nobody until claimed
_STALE_WARMING_S = 300.0
_IDLE_CMD = ["sleep", "infinity"]


class SandboxShape:
    """What a sandbox container is made of; sandboxes of one shape are interchangeable."""

    def __init__(self, image: str, network: str, memory_mb: int, cpus: float) -> None:
        self.image, self.network, self.memory_mb, self.cpus = image, network, memory_mb, cpus

    @property
    def key(self) -> str:
        return f"{self.image}|{self.network}|{self.memory_mb}|{self.cpus:g}"


def sandbox_spec(settings: Settings, workload_id: str, tenant_id: str, shape: SandboxShape) -> WorkloadSpec:
    """A sandbox: gVisor, read-only root with a tmpfs workspace, no capabilities, and no network at all
    for network 'none' (no interface but loopback) or only the shared egress bridge for 'egress' (egress
    'open' under the host's rules, as a service: the internet, never the host, its LAN or metadata)."""
    return WorkloadSpec(
        id=workload_id,
        kind="sandbox",
        tenant_id=tenant_id,
        image=shape.image,
        command=_IDLE_CMD,
        memory_mb=shape.memory_mb,
        cpus=shape.cpus,
        pids_limit=settings.default_pids_limit,
        runtime="runsc",
        tmpfs={"/tmp": settings.tmpfs_size_mb, "/run": 16, "/var/tmp": 16, "/workspace": settings.sandbox_workspace_mb},
        workdir="/workspace",
        egress="none" if shape.network == "none" else "open",
        restart="never",
        init=True,  # reaps what timed-out execs leave behind
        labels={L_POOL: shape.key} if tenant_id == POOL_TENANT else {},
    )


class WarmPool:
    def __init__(self, settings: Settings, store: Store, backend: Backend) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self._wake = anyio.Event()
        self._hold_until = 0.0  # anyio.current_time() until which claims hold topping-up back (see hold)
        self._deferred = False  # a shape waits for the hold's end to be topped up
        # Pooled containers holding an exec this process prepared: only this process can use it, so its claims
        # take these first (another process's, or one whose process exited, runs its first exec via the engine).
        self._prepared_here: set[str] = set()

    def configured(self) -> list[SandboxShape]:
        s = self.settings
        return [
            SandboxShape(i, n, s.sandbox_memory_mb, s.sandbox_cpus)
            for i in s.pool_images
            for n in s.sandbox_pool_networks
        ]

    def shape_for(self, image: str, network: str, memory_mb: int, cpus: float) -> SandboxShape | None:
        """The pooled shape a request matches, if any."""
        wanted = SandboxShape(image, network, memory_mb, cpus).key
        found = next((s for s in self.configured() if s.key == wanted), None)
        return found if self.settings.sandbox_pool_size else None

    async def shapes(self) -> list[SandboxShape]:
        """The configured shapes asked for within sandbox_pool_idle_s: only those are kept warm."""
        if not self.settings.sandbox_pool_size:
            return []
        since = (datetime.now(UTC) - timedelta(seconds=self.settings.sandbox_pool_idle_s)).isoformat(
            timespec="milliseconds"
        )
        wanted = await self.store.pool.demanded_since(since)
        return [s for s in self.configured() if s.key in wanted]

    def hold(self) -> None:
        """A claim is coming: a shape that still has a warm container afterwards is topped up only
        ``sandbox_pool_refill_delay_s`` after the last claim, by a pass at the hold's end. Starting a replacement
        keeps the engine and this process busy for about half a second, when the new sandbox's first commands
        come: measured on its first exec, 13 ms more than with the refill held back. The claim that takes a
        shape's last warm container wakes the loop (``wake``): a shape with none is filled at once, since its
        next request would start cold. Held before the claim, so that a pass already under way does not top up
        behind it; each pass decides from the pool as it is then, whatever order concurrent claims come in."""
        until = anyio.current_time() + self.settings.sandbox_pool_refill_delay_s
        self._hold_until = max(self._hold_until, until)
        self._deferred = True

    def wake(self) -> None:
        """Ask the loop for a pass now (a pool was emptied, or a shape was asked for)."""
        self._wake.set()

    async def idle(self) -> None:
        """Between two passes of the pool's loop (``SandboxManager.run``): until woken, the reap interval, or the
        end of a hold that left a shape to be topped up then."""
        wait = self.settings.sandbox_reap_interval_s
        if self._deferred:
            wait = min(wait, max(0.0, self._hold_until - anyio.current_time()))
        with anyio.move_on_after(wait):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def refill(self) -> int:
        """Top every configured shape up to the pool size (one that still has a warm container only once no
        claim holds it back: see ``hold``); returns how many containers were started."""
        started = 0
        self._deferred = False
        await self._drop_stale()
        if not await self.backend.runtimes() >= {"runsc"}:
            return 0
        for shape in await self.shapes():
            if not await self.backend.image_exists(shape.image):
                continue
            dry = not await self.store.pool.ready(shape.key)  # filled now, whatever holds the rest back
            while (dry or not self._held()) and (
                workload_id := await self.store.pool.reserve(shape.key, self.settings.sandbox_pool_size)
            ) is not None:
                try:
                    await self.backend.ensure_workload(sandbox_spec(self.settings, workload_id, POOL_TENANT, shape))
                    await self._warm_up(workload_id)
                    await self._prepare(workload_id)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._discard(workload_id)
                    raise
                if not await self.store.pool.mark_ready(workload_id):
                    await self._discard(workload_id)  # dropped as stale meanwhile
                    continue
                started += 1
            self._deferred = self._deferred or self._held()
        return started

    def _held(self) -> bool:
        return self._hold_until > anyio.current_time()

    async def _warm_up(self, workload_id: str) -> None:
        """Raises: AgentHostError when the container cannot run a command (it is then discarded)."""
        if not self.settings.sandbox_pool_warmup:
            return
        result = await self.backend.exec(
            workload_id, ExecSpec(["/bin/sh", "-c", self.settings.sandbox_pool_warmup], timeout_s=30)
        )
        if result.exit_code is None:
            raise AgentHostError(f"pooled sandbox container {workload_id} did not finish its warm-up")

    async def claim(self, tx: Tx, pool_key: str) -> str | None:
        """Take a ready container of ``pool_key`` out of the pool (one this process prepared an exec in first)."""
        claimed = await self.store.pool.claim(tx, pool_key, sorted(self._prepared_here))
        if claimed:
            self._prepared_here.discard(claimed)
        return claimed

    async def _prepare(self, workload_id: str) -> None:
        try:
            if await self.backend.prepare_exec(workload_id) is not None:
                self._prepared_here.add(workload_id)
        except AgentHostError as exc:
            log.warning(
                "pooled sandbox container %s: no exec prepared, its first goes through the engine: %s", workload_id, exc
            )

    async def _discard(self, workload_id: str) -> None:
        self._prepared_here.discard(workload_id)
        try:
            await self.backend.remove_workload(workload_id)
        finally:
            await self.store.pool.remove(workload_id)

    async def _drop_stale(self) -> None:
        """Slots of shapes no longer configured, and slots whose starter died before the container was ready."""
        wanted = {s.key for s in await self.shapes()}
        now = datetime.now(UTC)
        rows = await self.store.pool.all()
        running = set()
        if any(r.state == "ready" for r in rows):
            found = await self.backend.list_workloads({L_TENANT: POOL_TENANT})
            running = {st.id for st in found if st.state == "running"}
        for row in rows:
            stale = row.state == "warming" and (now - row.created_at).total_seconds() > _STALE_WARMING_S
            dead = row.state == "ready" and row.workload_id not in running
            if row.pool_key not in wanted or stale or dead:
                log.info("dropping pooled sandbox container %s (%s)", row.workload_id, row.pool_key)
                await self._discard(row.workload_id)

    async def drain(self) -> int:
        """Remove every pooled container (operators: before changing images; tests: at the end)."""
        rows = await self.store.pool.all()
        for row in rows:
            await self._discard(row.workload_id)
        return len(rows)

    async def known_ids(self) -> set[str]:
        return {row.workload_id for row in await self.store.pool.all()}
