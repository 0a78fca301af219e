"""Per-tenant token buckets: a burst of a minute's allowance, refilled continuously."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, tenant_id: str) -> None:
        """Take one token. Raises: RateLimited when the bucket is empty."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(tenant_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[tenant_id] = (tokens, now)
            wait = (1.0 - tokens) * 60.0 / self.per_minute
            raise RateLimited(f"more than {self.per_minute} calls a minute", round(wait, 1) or 0.1)
        self._buckets[tenant_id] = (tokens - 1.0, now)
