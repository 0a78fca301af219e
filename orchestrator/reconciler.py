"""Desired state in SQLite against what the backend reports, repaired every interval.

- a record that wants to run but has no workload (a crash between intent and outcome) is redeployed;
- a workload that exhausted its restarts opens the service's circuit breaker (status failed);
- a managed workload with no record (an orphan) is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio

from .errors import AgentHostError, BackendUnavailable
from .services import ServiceManager
from .store import Store, all_service_records

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)
_GRACE_S = 120.0


class Reconciler:
    def __init__(self, store: Store, services: ServiceManager, interval_s: float) -> None:
        self.store = store
        self.services = services
        self.interval_s = interval_s
        # Other use-cases register the workload ids they own, so they are not taken for orphans,
        # and passes of their own (databases, backups), run before orphans are collected.
        self.known_ids: list[Callable[[], Awaitable[set[str]]]] = []
        self.passes: list[Callable[[], Awaitable[dict[str, int]]]] = []

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except BackendUnavailable as exc:
                log.warning("reconcile skipped: %s", exc)
            except AgentHostError:
                log.exception("reconcile failed")
            await anyio.sleep(self.interval_s)

    async def reconcile_once(self) -> dict[str, int]:
        backend = self.services.backend
        records = await all_service_records(self.store.db)
        now = datetime.now(UTC)
        counts = {"redeployed": 0, "failed": 0, "orphans_removed": 0, "deleted": 0}
        for rec in records:
            ts = self.store.scoped(rec.tenant_id)
            if rec.desired_state == "deleted":
                if (now - rec.updated_at).total_seconds() < _GRACE_S:
                    continue  # a delete in progress, maybe in another process: its caller reports what it removed
                # A delete that died half-way: finish it.
                await backend.remove_workload(rec.id)
                await ts.services.delete(rec.id)
                counts["deleted"] += 1
                continue
            st = await backend.workload_status(rec.id)
            if rec.status == "deploying" and (now - rec.updated_at).total_seconds() < _GRACE_S:
                continue  # another process may be creating it right now
            if rec.desired_state == "running" and st.state == "missing":
                await ts.services.update(rec.id, status="deploying")
                await backend.ensure_workload(await self.services.workload_spec(ts, rec))
                counts["redeployed"] += 1
            elif rec.desired_state == "running" and st.state == "exited":
                await self.services.health.mark_exited(ts, rec, st)
                counts["failed"] += 1
            elif rec.status == "deploying" and st.state == "running":
                await self.services.view(ts, rec)
        for extra in self.passes:
            counts.update(await extra())
        # List first, then read who owns what: a workload created meanwhile had its record written before
        # its container, so it is known here and never taken for an orphan.
        workloads = await backend.list_workloads({})
        known = {r.id for r in await all_service_records(self.store.db)}
        for source in self.known_ids:
            known |= await source()
        for st in workloads:
            if st.id not in known and st.labels.get("agenthost.kind") != "job":
                log.warning("removing orphan workload %s", st.id)
                await backend.remove_workload(st.id)
                counts["orphans_removed"] += 1
        return counts
