"""Desired state in SQLite against what the backend reports, repaired every interval.

- a record that wants to run but has no workload (a crash between intent and outcome) is redeployed;
- a workload that exhausted its restarts opens the service's circuit breaker (status failed);
- a managed workload with no record (an orphan) is removed.

A record whose repair raises is logged with its id and skipped (``repairs``); the rest of the pass
still runs, and its counts say how many failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import anyio

from ..backends.base import WorkloadStatus
from ..errors import AgentHostError, BackendUnavailable
from ..labels import L_KIND, slot_base
from ..models import ServiceRecord
from ..store import Store, all_service_records
from .manager import ServiceManager
from .repairs import PassFailures, still_wanted
from .switch import stale

__all__ = ["KnownIds", "Pass", "Reconciler"]

log = logging.getLogger(__name__)
_GRACE_S = 120.0

KnownIds = Callable[[], Awaitable[set[str]]]
Pass = Callable[[], Awaitable[dict[str, int]]]


class Reconciler:
    def __init__(
        self,
        store: Store,
        services: ServiceManager,
        interval_s: float,
        known_ids: Sequence[KnownIds] = (),
        passes: Sequence[Pass] = (),
    ) -> None:
        """``known_ids``: the workload ids other use-cases own, so they are not taken for orphans; ``passes``:
        their own repairs (databases, backups, ingress, housekeeping), run in order before orphans are collected.
        """
        self.store = store
        self.services = services
        self.interval_s = interval_s
        self.known_ids = tuple(known_ids)
        self.passes = tuple(passes)
        # Passes of run() that reached their end since this process started (platform_status shows it to
        # admins): one that began after a change and finished has seen it.
        self.passes_finished = 0

    async def run(self) -> None:
        while True:
            try:
                counts = await self.reconcile_once()
                if any(v for k, v in counts.items() if k.endswith("_failed")):
                    log.warning("reconcile pass done with failures (logged above): %s", counts)
                self.passes_finished += 1
            except BackendUnavailable as exc:
                log.warning("reconcile skipped: %s", exc)
            except AgentHostError:
                log.exception("reconcile failed")
            await anyio.sleep(self.interval_s)

    async def reconcile_once(self) -> dict[str, int]:
        """One pass. Raises: BackendUnavailable when the engine cannot be reached (nothing is repaired)."""
        backend = self.services.backend
        now = datetime.now(UTC)
        counts = {"redeployed": 0, "failed": 0, "orphans_removed": 0, "deleted": 0}
        records = PassFailures()
        # One listing for every record's state, instead of one engine call a record (a thousand services were a
        # thousand round trips); a record's repair asks again before it acts on a state other than running.
        listed = {st.id: st for st in await backend.list_workloads({})}
        for rec in await all_service_records(self.store.db):
            with records.guard(f"service {rec.id}"):
                await self._repair(rec, now, counts, listed.get(rec.id))
        passes = PassFailures()
        for extra in self.passes:
            with passes.guard(f"pass {getattr(extra, '__qualname__', extra)}"):
                counts.update(await extra())
        # List again, after the passes, then read who owns what: a workload created meanwhile had its record
        # written before its container, so it is known here and never taken for an orphan.
        workloads = await backend.list_workloads({})
        services = {r.id: r for r in await all_service_records(self.store.db)}
        known = set(services)
        for source in self.known_ids:
            known |= await source()
        for st in workloads:
            slot = slot_base(st.id)
            if slot is not None and not stale(services.get(slot[0]), slot[1], now, _GRACE_S):
                continue  # the second container of an update under way
            if st.id not in known and st.labels.get(L_KIND) != "job":
                with records.guard(f"orphan workload {st.id}"):
                    log.warning("removing orphan workload %s", st.id)
                    await backend.remove_workload(st.id)
                    counts["orphans_removed"] += 1
        counts["repairs_failed"] = records.count
        counts["passes_failed"] = passes.count
        return counts

    async def _repair(
        self, rec: ServiceRecord, now: datetime, counts: dict[str, int], listed: WorkloadStatus | None
    ) -> None:
        """``listed``: the workload's state in the pass's listing, taken before the record was read."""
        backend = self.services.backend
        ts = self.store.scoped(rec.tenant_id)
        if rec.desired_state == "deleted":
            if (now - rec.updated_at).total_seconds() < _GRACE_S:
                return  # a delete in progress, maybe in another process: its caller reports what it removed
            # A delete that died half-way: finish it.
            await backend.remove_workload(rec.id)
            await ts.services.delete(rec.id)
            await self.services.note(ts, rec, "deleted", "the reconciler finished a delete that was interrupted")
            counts["deleted"] += 1
            return
        # Running as listed needs nothing (a record still deploying is looked at again by view). Any other
        # state may be older than the record (a start since the listing): asked afresh before it is acted on.
        st = listed if listed is not None and listed.state == "running" else await backend.workload_status(rec.id)
        if rec.status == "deploying" and (now - rec.updated_at).total_seconds() < _GRACE_S:
            return  # another process may be creating it right now
        if rec.desired_state == "running" and st.state == "missing":
            await ts.services.update(rec.id, status="deploying")
            try:
                await backend.ensure_workload(await self.services.workload_spec(ts, rec))
            except AgentHostError as exc:
                # Tell its owner why it is not coming back (get_service shows it); the next pass tries again.
                await ts.services.update(rec.id, last_error=f"the reconciler could not recreate it: {exc.message}")
                raise
            if not await still_wanted(ts.services.get, backend, rec.id):
                return
            await self.services.note(ts, rec, "repaired", "the container was missing; the reconciler recreated it")
            counts["redeployed"] += 1
        elif rec.desired_state == "running" and st.state == "exited":
            await self.services.health.mark_exited(ts, rec, st)
            counts["failed"] += 1
        elif rec.status == "deploying" and st.state == "running":
            await self.services.view(ts, rec)
