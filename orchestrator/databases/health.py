"""A database's health: ready once it accepts connections and the tenant's user is in place; the record
brought in line with what the engine reports; waiting for it with a bound; crash reports."""

from __future__ import annotations

import time

from ..backends.base import Backend, WorkloadStatus
from ..errors import AgentHostError, BackendUnavailable, WorkloadFailed
from ..models import DatabaseRecord, untrusted
from ..progress import Reporter, silent
from ..secrets import mask_secrets
from ..settings import Settings
from ..store import TenantStore
from ..watch import StatusFeed
from .engines import accepts_connections
from .roles import setup_tenant_role

__all__ = ["DatabaseHealth"]


class DatabaseHealth:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend

    async def ready(self, ts: TenantStore, rec: DatabaseRecord, st: WorkloadStatus) -> bool:
        """It accepts connections, and the tenant's user is in place.

        Raises: WorkloadFailed when Postgres refused to set up the tenant's role."""
        ep = st.endpoints.get(rec.spec.port)
        if st.state != "running" or ep is None:
            return False
        secrets = await ts.databases.secrets(rec.id)
        if not await accepts_connections(rec.engine, rec.spec, secrets.password, ep.host, ep.port):
            return False
        return await setup_tenant_role(self.backend, rec, secrets.password, secrets.superuser)

    async def _settled(self, ts: TenantStore, rec: DatabaseRecord, st: WorkloadStatus) -> bool:
        """Record running once ready, or failed when the tenant's role could not be set up; True if either."""
        try:
            if not await self.ready(ts, rec, st):
                return False
        except WorkloadFailed as exc:
            await ts.databases.update(rec.id, status="failed", last_error=exc.message)
            return True
        await ts.databases.update(rec.id, status="running", last_error=None)
        return True

    async def crash_report(self, ts: TenantStore, rec: DatabaseRecord, st: WorkloadStatus) -> str:
        if st.state == "missing":
            return "the container is gone; the reconciler recreates it from the data volume"
        why = "killed: out of memory (raise memory_mb)" if st.oom_killed else f"exited with code {st.exit_code}"
        try:
            lines = [ln.text async for ln in self.backend.logs(rec.id, tail=20)]
        except AgentHostError:
            lines = []
        tail = mask_secrets("\n".join(lines), (await ts.databases.secrets(rec.id)).all)[-4000:]
        return f"{why}; last log lines:\n{untrusted(tail)}" if tail else why

    async def refresh(self, ts: TenantStore, rec: DatabaseRecord) -> tuple[DatabaseRecord, WorkloadStatus | None]:
        try:
            st = await self.backend.workload_status(rec.id)
        except BackendUnavailable:
            return rec, None
        if rec.desired_state != "running" or rec.status == "restoring":
            return rec, st
        if st.node_lost and (rec.status, rec.last_error) != ("failed", st.error):
            await ts.databases.update(rec.id, status="failed", last_error=st.error)
            return await ts.databases.get(rec.id), st
        if rec.status in ("creating", "failed") and await self._settled(ts, rec, st):
            return await ts.databases.get(rec.id), st
        if rec.status in ("creating", "running") and st.state in ("exited", "missing"):
            await ts.databases.update(rec.id, status="failed", last_error=await self.crash_report(ts, rec, st))
            return await ts.databases.get(rec.id), st
        return rec, st

    async def wait_ready(
        self, ts: TenantStore, rec: DatabaseRecord, timeout_s: float | None, report: Reporter = silent
    ) -> DatabaseRecord:
        """Until it accepts connections (running), crashes (failed) or the bounded wait ends (unchanged)."""
        budget = min(timeout_s or self.settings.wait_timeout_s, 600.0)
        started = time.monotonic()
        feed = StatusFeed(self.backend, rec.id)
        st = await feed.first()
        baseline = st.restarts
        await report(f"waiting for {rec.name} to accept connections", 0, budget)
        while (elapsed := time.monotonic() - started) < budget:
            if st.state in ("exited", "missing") or st.restarts > baseline:
                await ts.databases.update(rec.id, status="failed", last_error=await self.crash_report(ts, rec, st))
                return await ts.databases.get(rec.id)
            if await self._settled(ts, rec, st):
                rec = await ts.databases.get(rec.id)
                if rec.status == "running":
                    await report(f"{rec.name} accepts connections", budget, budget)
                return rec
            await report(f"{rec.name}: container {st.state}, waiting for {rec.engine}", elapsed, budget)
            st = await feed.next(st, budget - elapsed)
        await report(f"{rec.name} still starting after {budget:.0f} s; poll get_database", budget, budget)
        return await ts.databases.get(rec.id)
