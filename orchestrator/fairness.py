"""Per-tenant concurrency caps: one tenant cannot starve the others.

A cap counts what a tenant has running at once in this process (tool calls in flight, execs);
the next one is refused at once with ``busy`` and a retry time, never queued. MCP over HTTP and
REST share one process, so they share the counts; each ``agenthost mcp`` (stdio) process counts
its own. The engine's limits (memory, CPU, pids) and the quotas in SQLite hold across processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .backends.threaded import on_behalf_of
from .errors import Busy

__all__ = ["RETRY_AFTER_S", "TenantSlots", "on_behalf_of"]

# Slots free when the tenant's own work ends, which the platform cannot predict: a short, fixed wait.
RETRY_AFTER_S = 2.0


class TenantSlots:
    """At most ``cap`` holders per tenant at once."""

    def __init__(self, what: str, setting: str, cap: int, hint: str = "") -> None:
        self.what = what
        self.setting = setting
        self.cap = cap
        self.hint = hint
        self._held: dict[str, int] = {}

    def in_use(self, tenant_id: str) -> int:
        return self._held.get(tenant_id, 0)

    @contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        """One slot for the block. Raises: Busy when the tenant holds ``cap`` already."""
        held = self._held.get(tenant_id, 0)
        if held >= self.cap:
            raise Busy(
                f"this tenant has {held} {self.what} running at once, the most it may ({self.setting})",
                RETRY_AFTER_S,
                f"retry in {RETRY_AFTER_S:g} s, once one of them has ended{self.hint}",
            )
        self._held[tenant_id] = held + 1
        try:
            yield
        finally:
            left = self._held[tenant_id] - 1
            if left:
                self._held[tenant_id] = left
            else:
                del self._held[tenant_id]
