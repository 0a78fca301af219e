"""Zero-downtime redeploys: the new version starts beside the running one and takes its traffic only once it
answers.

When a running, routed service changes (update_service, set_env, unset_env, a rollback) on a backend that
can run a second container of a workload (Docker), the new version starts in the workload's "next" slot,
on the same private network under the same name. Once its health check passes it is promoted: it becomes
the workload's container, the ingress route is switched to it, and the previous container, now in the
"old" slot, keeps serving what it had in flight for ``ingress_drain_s`` seconds before it is stopped.
When the new version crashes or does not answer in time, it is removed and the previous one never stopped
serving; the caller gets the new one's log tail.

Services with volumes are recreated instead (two containers writing one volume at once could corrupt it),
and so are stopped or failing ones, and everything on Nomad, whose deployments replace allocations.
A process that dies half-way leaves a slot container behind; the reconciler removes it (``stale``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio

from ..backends.base import Backend, WorkloadSpec
from ..errors import WorkloadFailed
from ..labels import SLOTS, slot_id
from ..models import ServiceRecord
from ..progress import Reporter
from ..settings import Settings
from ..store import TenantStore
from .companions import ServiceEvent
from .health import ServiceHealth

__all__ = ["ServiceSwitch", "stale"]

_STOP_S = 5.0  # how long the previous version gets to exit on SIGTERM once drained


class ServiceSwitch:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        health: ServiceHealth,
        spec_of: Callable[[TenantStore, ServiceRecord], Awaitable[WorkloadSpec]],
        emit: Callable[[TenantStore, ServiceRecord, ServiceEvent], Awaitable[None]],
    ) -> None:
        """``spec_of``: a service's workload spec; ``emit``: tells the routes its container changed."""
        self.settings = settings
        self.backend = backend
        self.health = health
        self._spec_of = spec_of
        self._emit = emit

    async def applies(self, rec: ServiceRecord) -> bool:
        """Whether ``rec``'s next redeploy can keep it serving: a running, routed service without volumes."""
        if not (self.backend.staged_updates and self.settings.ingress and rec.spec.port and rec.spec.public):
            return False
        if rec.spec.volumes or rec.desired_state != "running" or rec.status != "running":
            return False
        return (await self.backend.workload_status(rec.id)).state == "running"

    async def replace(self, ts: TenantStore, rec: ServiceRecord, report: Reporter) -> ServiceRecord:
        """Start ``rec``'s recorded version beside the running one, switch to it once it answers, and retire
        the previous one.

        Raises: WorkloadFailed (the previous version still serving) when the new one crashed or did not answer.
        """
        spec = (await self._spec_of(ts, rec)).model_copy(update={"slot": "next"})
        if (await self.backend.workload_status(rec.id)).spec_hash == spec.spec_hash():
            return rec  # it already runs this version (a rollback to the version that kept serving)
        staged = slot_id(rec.id, "next")
        await report(f"starting the new version of {rec.name} beside the running one", None, None)
        try:
            await self.backend.ensure_workload(spec)
            failure = await self._wait(ts, rec, staged, report)
            if failure is None:
                await self.backend.promote_workload(rec.id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.backend.remove_workload(staged)
            raise
        if failure is not None:
            await self.backend.remove_workload(staged)
            raise WorkloadFailed(
                f"the new version of {rec.name} {failure}",
                "the previous version kept serving; fix the new image, command or env and try again",
            )
        # Past the promotion, the switch and the drain finish even when the caller goes away.
        with anyio.CancelScope(shield=True):
            await ts.services.update(rec.id, status="running", last_error=None, restarts=0)
            rec = await ts.services.get(rec.id)
            await self._emit(ts, rec, "running")  # the route now leads to the new container
            await report(f"{rec.name} switched to its new version; draining the previous one", None, None)
            await anyio.sleep(self.settings.ingress_drain_s)
            retired = slot_id(rec.id, "old")
            await self.backend.stop_workload(retired, timeout_s=_STOP_S)
            await self.backend.remove_workload(retired)
        return rec

    async def _wait(self, ts: TenantStore, rec: ServiceRecord, staged: str, report: Reporter) -> str | None:
        """None once the new version answers; else why it will not (with its log tail)."""
        budget = min(self.settings.wait_timeout_s, 600.0)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < budget:
            st = await self.backend.workload_status(staged)
            if st.state in ("exited", "missing") or st.restarts:
                why = await self.health.crash_report(ts, rec, st)
                await self.health.crashed(ts, rec, st, why)
                return why
            if st.state == "running" and await self.health.answers(rec, st):
                return None
            await report(f"new version of {rec.name}: {st.state}, waiting for port {rec.spec.port}", elapsed, budget)
            await anyio.sleep(0.1)
        return f"did not answer on port {rec.spec.port} within {budget:.0f} s"

    async def forget(self, rec: ServiceRecord) -> None:
        """Before a service's record goes: the slot containers of an update under way go too."""
        if self.backend.staged_updates:
            for slot in SLOTS:
                await self.backend.remove_workload(slot_id(rec.id, slot))


def stale(rec: ServiceRecord | None, slot: str, now: datetime, grace_s: float) -> bool:
    """Whether a slot container of ``rec`` outlived the update that made it (its process died half-way).

    An update touches its record when it starts and when it switches; a new version may take up to 600 s to
    answer, a drained one is removed ``ingress_drain_s`` after the switch."""
    if rec is None:
        return True
    age = (now - rec.updated_at).total_seconds()
    return age > grace_s + (600.0 if slot == "next" else 0.0)
