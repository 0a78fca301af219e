"""The two figures of a tenant's usage that cost more than a SQLite read, kept for ``whoami``: the volumes it
holds (an engine listing besides two reads) and the bytes of its build logs (a walk of its log folder).

They are kept per tenant for ``usage_cache_ttl_s`` and dropped sooner by anything this process does that
may change them: every mutating tool call of the tenant drops the tenant's figures when it ends (deploys and
deletes with their volumes, restores, builds and their logs), so a caller sees its own changes at once. What
changes them outside a tool call (a build's log growing, a restore finishing in the background, another
process on the same data dir) shows within the TTL. Quota checks never read these figures: each reads the
engine and the store itself, inside the transaction that records the new thing (orchestrator/quotas.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

__all__ = ["HeldFigures", "UsageCache"]


@dataclass(frozen=True)
class HeldFigures:
    volumes: int | None  # None: the engine did not answer (never kept)
    build_log_bytes: int


class UsageCache:
    """Per-tenant ``HeldFigures``, each computed at most once per TTL however many callers of the tenant ask at
    once. A tenant's entry is only ever read for that tenant (the key is the caller's tenant id)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._kept: dict[str, tuple[float, HeldFigures]] = {}
        # Bumped by forget: a computation that began before a forget does not keep what it found.
        self._generation: dict[str, int] = {}
        self._locks: dict[str, anyio.Lock] = {}

    def forget(self, tenant_id: str) -> None:
        """The tenant's next ``figures`` computes them again (something may have changed them)."""
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        self._kept.pop(tenant_id, None)

    def _fresh(self, tenant_id: str) -> HeldFigures | None:
        kept = self._kept.get(tenant_id)
        if kept is not None and self._clock() - kept[0] < self._ttl:
            return kept[1]
        return None

    async def figures(self, tenant_id: str, compute: Callable[[], Awaitable[HeldFigures]]) -> HeldFigures:
        """The tenant's figures, kept or from ``compute`` (kept unless the engine was away or a ``forget``
        came while it ran)."""
        if (fresh := self._fresh(tenant_id)) is not None:
            return fresh
        lock = self._locks.setdefault(tenant_id, anyio.Lock())
        async with lock:
            if (fresh := self._fresh(tenant_id)) is not None:
                return fresh  # another caller of the tenant computed them while this one waited
            generation = self._generation.get(tenant_id, 0)
            found = await compute()
            if found.volumes is not None and self._ttl > 0 and self._generation.get(tenant_id, 0) == generation:
                now = self._clock()
                self._kept = {t: k for t, k in self._kept.items() if now - k[0] < self._ttl}
                self._kept[tenant_id] = (now, found)
            return found
