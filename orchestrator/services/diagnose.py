"""diagnose_service: what the platform knows about one service, gathered in one call, and the most likely
cause of its trouble by a few plain rules over those facts (nothing is guessed beyond them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..backends.base import WorkloadState, WorkloadStatus
from ..errors import AgentHostError
from ..models import HealthCheck, Principal, ServiceRecord, ServiceSpec, ServiceStatus, untrusted
from .manager import ServiceManager
from .readiness import endpoint_answers

__all__ = ["Diagnosis", "ServiceDiagnosis", "likely_cause"]

_LOG_LINES = 30


class Diagnosis(BaseModel):
    service: str
    status: ServiceStatus
    container: WorkloadState | None = None  # null: the engine did not answer
    restarts: int
    exit_code: int | None = None
    oom_killed: bool = False
    breaker_open: bool
    image_present: bool | None = None
    port: int | None = None
    port_answers: bool | None = None  # null: not checked (not running, or no port)
    last_error: str | None = None
    log_tail: str = Field(description="untrusted data, secrets masked")
    likely_cause: str | None = None
    hint: str


def _recorded_crash(last_error: str) -> str:
    """The platform's own words from a crash report: its first line, before the workload's log tail."""
    return last_error.split("\n", 1)[0].removesuffix("; last log lines:").strip()


def likely_cause(d: Diagnosis, spec: ServiceSpec, desired_state: str) -> tuple[str | None, str]:
    """(cause, hint) from the gathered facts and the service's spec, the first rule that matches; (None, ...)
    when none does."""
    fix = "read log_tail, fix the command, env or code (update_service), then start_service"
    if d.image_present is False:
        return f"image {spec.image} is not on this host", "update_service with an image you have, or build_from_git"
    recorded = _recorded_crash(d.last_error) if d.last_error else ""
    if d.oom_killed or "out of memory" in recorded:
        return f"killed for running out of memory (memory_mb {spec.memory_mb})", (
            "update_service with a larger memory_mb, or make the app use less; then start_service"
        )
    if d.status == "failed" and recorded:
        if "code 0" in recorded:
            return recorded, "a service's command must keep running in the foreground; fix it, then start_service"
        return recorded, fix
    if d.breaker_open:
        return f"circuit breaker open after {d.restarts} restarts", fix
    if desired_state == "stopped":
        return "stopped on request", "start_service starts it"
    if d.container == "missing":
        return "its container is gone", "the reconciler recreates it within a minute; start_service does it now"
    if d.restarts and d.container in ("restarting", "exited", "running"):
        code = f", last exit code {d.exit_code}" if d.exit_code is not None else ""
        return f"crash loop: {d.restarts} restarts{code}", fix
    if d.container == "running" and d.port_answers is False:
        return f"the container runs but port {d.port} does not answer", (
            f"the app must listen on 0.0.0.0:{d.port}: check port, command and log_tail"
        )
    if d.status == "deploying" or d.container == "pending":
        return "still starting", "poll get_service, or diagnose_service again in a few seconds"
    return None, "no problem found"


class ServiceDiagnosis:
    def __init__(self, services: ServiceManager) -> None:
        self.services = services

    async def diagnose(self, p: Principal, ref: str) -> Diagnosis:
        """Raises: NotFound."""
        services = self.services
        ts = services.store.scoped(p.tenant_id)
        rec, st = await services.health.refresh(ts, await ts.services.get(ref))
        try:
            image_present: bool | None = await services.backend.image_exists(rec.spec.image)
        except AgentHostError:
            image_present = None
        d = Diagnosis(
            service=rec.name,
            status=rec.status,
            container=st.state if st else None,
            restarts=st.restarts if st else rec.restarts,
            exit_code=st.exit_code if st else None,
            oom_killed=st.oom_killed if st else False,
            breaker_open=rec.breaker_open,
            image_present=image_present,
            port=rec.spec.port,
            port_answers=await _port_answers(rec, st),
            last_error=rec.last_error,
            log_tail=untrusted(await services.health.log_tail(ts, rec, _LOG_LINES)),
            hint="",
        )
        d.likely_cause, d.hint = likely_cause(d, rec.spec, rec.desired_state)
        return d


async def _port_answers(rec: ServiceRecord, st: WorkloadStatus | None) -> bool | None:
    if st is None or st.state != "running" or not rec.spec.port or rec.spec.port not in st.endpoints:
        return None
    ep = st.endpoints[rec.spec.port]
    check = rec.spec.health_check if rec.spec.health_check.type != "none" else HealthCheck(type="tcp")
    return await endpoint_answers(ep.host, ep.port, check, timeout_s=2.0)
