"""A service's health: what the engine reports, brought in line with the record; waiting until a service
answers; crash reports and the circuit breaker; and the view a caller gets of it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..backends.base import Backend, WorkloadStatus
from ..errors import AgentHostError, BackendUnavailable
from ..events import EventLog
from ..models import ServiceConfig, ServiceRecord, untrusted
from ..progress import Reporter
from ..secrets import mask_secrets
from ..settings import Settings
from ..store import TenantStore
from ..watch import StatusFeed
from .models import Service
from .readiness import endpoint_answers

__all__ = ["ServiceHealth", "service_view"]


def service_view(
    rec: ServiceRecord,
    st: WorkloadStatus | None,
    env_keys: list[str],
    url: str | None = None,
) -> Service:
    """What a caller sees of a service: its record, the engine's restart count, its stable public address
    (``url``, from the ingress) and its address on the host while it runs (``internal_url``)."""
    internal_url = None
    if st is not None and st.state == "running" and rec.spec.port and rec.spec.port in st.endpoints:
        ep = st.endpoints[rec.spec.port]
        internal_url = f"http://{ep.host}:{ep.port}"
    return Service(
        id=rec.id,
        name=rec.name,
        status=rec.status,
        url=url,
        internal_url=internal_url if rec.status == "running" else None,
        env_keys=env_keys,
        **rec.spec.model_dump(include=set(ServiceConfig.model_fields)),
        restarts=st.restarts if st is not None else rec.restarts,
        last_error=rec.last_error,
        created_at=rec.created_at,
        updated_at=rec.updated_at,
    )


class ServiceHealth:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        secrets: Callable[[TenantStore, ServiceRecord], Awaitable[list[str]]],
        events: EventLog,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.events = events
        # Values to mask in a service's log tail (ServiceManager.known_secrets).
        self._secrets = secrets

    async def refresh(self, ts: TenantStore, rec: ServiceRecord) -> tuple[ServiceRecord, WorkloadStatus | None]:
        """Bring the recorded status in line with what the engine reports."""
        try:
            st = await self.backend.workload_status(rec.id)
        except BackendUnavailable:
            return rec, None
        status, error = rec.status, rec.last_error
        if rec.desired_state == "running":
            if st.state == "running" and rec.status != "running":
                if await self.answers(rec, st, quick=True):
                    status, error = "running", None
            elif st.state == "exited":
                return await self.mark_exited(ts, rec, st), st
            elif st.state == "missing":
                status, error = "deploying", "the container was lost; the reconciler recreates it"
        elif rec.status != "failed":
            status = "stopped"
        if (status, error, st.restarts) != (rec.status, rec.last_error, rec.restarts):
            await ts.services.update(rec.id, status=status, last_error=error, restarts=st.restarts)
            rec = await ts.services.get(rec.id)
        return rec, st

    async def mark_exited(self, ts: TenantStore, rec: ServiceRecord, st: WorkloadStatus) -> ServiceRecord:
        """A service that should run has exited for good; after crash_limit restarts its breaker opens."""
        error = await self.crash_report(ts, rec, st)
        await self.crashed(ts, rec, st, error)
        breaker = st.restarts >= self.settings.crash_limit
        if breaker:
            error = f"circuit breaker open after {st.restarts + 1} crashes (start_service once fixed): {error}"
            await self.events.record(ts, "service", rec.id, rec.name, "breaker_opened", error.split(": ", 1)[0])
        await ts.services.update(
            rec.id,
            status="failed",
            desired_state="stopped",
            breaker_open=breaker,
            restarts=st.restarts,
            last_error=error,
        )
        return await ts.services.get(rec.id)

    async def crashed(self, ts: TenantStore, rec: ServiceRecord, st: WorkloadStatus, report: str) -> None:
        """The crash goes to the event log with the platform's own words (not the workload's log tail)."""
        cause = report.split("; last log lines:", 1)[0]
        code = None if st.state == "missing" else st.exit_code
        await self.events.record(ts, "service", rec.id, rec.name, "crashed", cause, code)

    async def crash_report(self, ts: TenantStore, rec: ServiceRecord, st: WorkloadStatus) -> str:
        """Why the workload of ``st`` (``rec``'s, or its new version's) stopped, with its masked log tail."""
        if st.state == "missing":
            return "the container is gone; start_service recreates it"
        if st.state == "running" and st.health == "unhealthy":
            why = f"it did not pass its health check ({rec.spec.health_check.type} on port {rec.spec.port}) in time"
        elif st.oom_killed:
            why = "killed: out of memory (raise memory_mb)"
        else:
            why = f"exited with code {st.exit_code}"
        if st.restarts:
            why += f" after {st.restarts} restarts"
        tail = await self.log_tail(ts, rec, 20, st.id)
        return f"{why}; last log lines:\n{untrusted(tail)}" if tail else why

    async def log_tail(self, ts: TenantStore, rec: ServiceRecord, lines: int, workload_id: str | None = None) -> str:
        try:
            got = [ln.text async for ln in self.backend.logs(workload_id or rec.id, tail=lines)]
        except AgentHostError:
            return ""
        return mask_secrets("\n".join(got), await self._secrets(ts, rec))[-4000:]

    async def answers(self, rec: ServiceRecord, st: WorkloadStatus, quick: bool = False) -> bool:
        """Whether the workload of ``st`` answers as ``rec``'s health check asks (or passes the engine's own)."""
        if st.health == "healthy":
            return True
        if not rec.spec.port or rec.spec.health_check.type == "none":
            return True
        ep = st.endpoints.get(rec.spec.port)
        if ep is None:
            return False
        return await endpoint_answers(ep.host, ep.port, rec.spec.health_check, timeout_s=1.0 if quick else 2.0)

    async def wait_ready(
        self, ts: TenantStore, rec: ServiceRecord, timeout_s: float | None, report: Reporter
    ) -> ServiceRecord:
        """Until it answers (running), crashes or fails the engine's health check (failed), or the bounded wait
        ends (unchanged). Ready is the platform's probe answering, or the engine's own check passing (Nomad's,
        which asks more: an HTTP status below 400)."""
        budget = min(timeout_s or self.settings.wait_timeout_s, 600.0)
        started = time.monotonic()
        await report(f"waiting for {rec.name} to answer", 0, budget)
        feed = StatusFeed(self.backend, rec.id)
        st = await feed.first()
        while (elapsed := time.monotonic() - started) < budget:
            crashed = st.state in ("exited", "missing") or st.restarts > rec.restarts
            if not crashed and st.state == "running" and await self.answers(rec, st):
                await ts.services.update(rec.id, status="running", last_error=None, restarts=st.restarts)
                await report(f"{rec.name} is running", budget, budget)
                return await ts.services.get(rec.id)
            if crashed or st.health == "unhealthy":
                error = await self.crash_report(ts, rec, st)
                await self.crashed(ts, rec, st, error)
                await self.backend.stop_workload(rec.id, timeout_s=1)
                await ts.services.update(
                    rec.id, status="failed", desired_state="stopped", last_error=error, restarts=st.restarts
                )
                return await ts.services.get(rec.id)
            await report(f"{rec.name}: container {st.state}, waiting for port {rec.spec.port}", elapsed, budget)
            st = await feed.next(st, budget - elapsed)
        await report(f"{rec.name} still deploying after {budget:.0f} s; poll get_service", budget, budget)
        return await ts.services.get(rec.id)
