"""Housekeeping: reconciler passes that keep what tenants pile up in the store and the data dir bounded.

- audit rows older than ``audit_retention_days`` and events older than ``event_retention_days`` are
  deleted, and so are REST idempotency rows past their expiry (``expire_idempotency``); what tools show
  (whoami, the list tools) is not kept there;
- each tenant's build logs are kept within its ``max_build_log_bytes`` quota (``BuildManager.cap_logs``).

Tenant networks nothing uses are collected by ``NetworkCollector.collect``, another pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .builds import BuildManager
from .settings import Settings
from .store import Store, expire_audit, expire_events, expire_idempotency

__all__ = ["Housekeeping"]


class Housekeeping:
    def __init__(self, settings: Settings, store: Store, builds: BuildManager) -> None:
        self.settings = settings
        self.store = store
        self.builds = builds

    async def expire_rows(self, now: datetime | None = None) -> dict[str, int]:
        """Delete audit rows and events past their retention and idempotency rows past their expiry, of every
        tenant."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.settings.audit_retention_days)
        audit = await expire_audit(self.store.db, cutoff.isoformat(timespec="milliseconds"))
        cutoff = now - timedelta(days=self.settings.event_retention_days)
        events = await expire_events(self.store.db, cutoff.isoformat(timespec="milliseconds"))
        return {
            "audit_expired": audit,
            "events_expired": events,
            "idempotency_expired": await expire_idempotency(self.store.db),
        }

    async def cap_build_logs(self) -> dict[str, int]:
        """Bring every tenant that has build logs within its build-log quota."""
        root = self.builds.log_files.root
        folders = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
        removed = 0
        for tenant in await self.store.tenants.all():
            if tenant.id in folders:
                removed += await self.builds.cap_logs(self.store.scoped(tenant.id))
        return {"build_logs_removed": removed}
