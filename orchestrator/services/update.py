"""Applying a change of a service's spec or env (an update, a rollback), and taking it back when the new
version does not come up.

The caller has recorded the new spec and env with their revision (``RevisionLog.change``); here they are
redeployed. When that raises (the engine refuses the new image, command or user; the backend fails
half-way) or, with ``wait``, the new version comes up failed, the previous spec and env are recorded again
(the new revision kept, marked failed) and redeployed, and the caller gets an error that says so. Records
are restored first, so even when the second deploy fails too the reconciler brings back the previous
version, never the broken one.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..errors import AgentHostError, WorkloadFailed
from ..models import EventType, ServiceRecord
from ..progress import Reporter
from ..store import TenantStore
from .revisions import Change, RevisionLog

__all__ = ["Redeployer", "apply_update"]

log = logging.getLogger(__name__)

_HINT = "fix the new image, command or env and call update_service again"


class Redeployer(Protocol):
    revisions: RevisionLog

    async def redeploy(self, ts: TenantStore, rec: ServiceRecord, wait: bool, report: Reporter) -> ServiceRecord: ...

    async def note(self, ts: TenantStore, rec: ServiceRecord, type_: EventType, cause: str) -> None: ...


async def apply_update(
    services: Redeployer,
    ts: TenantStore,
    change: Change,
    wait: bool,
    report: Reporter,
    cause: str,
    what: str = "update",
    hint: str = _HINT,
) -> ServiceRecord:
    """Redeploy the service as ``change`` recorded it; ``cause`` goes into its event, ``what`` names the
    change in messages.

    Raises: WorkloadFailed after a rollback, saying why the new version failed and in what state the
    previous one is.
    """
    name = change.before.name
    await report(f"{what} of {name}", None, None)
    try:
        updated = await services.redeploy(ts, await ts.services.get(change.before.id), wait, report)
    except Exception as exc:  # whatever stopped the new version, the previous one must come back
        failure = _describe(exc, "the new version could not be started")
    else:
        if updated.status != "failed" or not wait:
            await services.note(ts, updated, "updated", cause)
            return updated
        failure = updated.last_error or "the new version failed"
    await report(f"{name}: new version failed; restoring the previous one", None, None)
    await services.revisions.undo(ts, change)
    try:
        restored = await services.redeploy(ts, await ts.services.get(change.before.id), True, report)
    except Exception as exc:
        raise await _failed(
            services,
            ts,
            change,
            f"{what} of {name} rolled back to its previous version, which did not start again either"
            f" ({_describe(exc, 'restoring it failed')}); the reconciler keeps trying. The new version: {failure}",
            "get_service shows its state; platform_status shows whether the engine is reachable",
        ) from exc
    raise await _failed(
        services,
        ts,
        change,
        f"{what} of {name} rolled back (service is {restored.status} on its previous version): {failure}",
        hint,
    )


async def _failed(services: Redeployer, ts: TenantStore, change: Change, message: str, hint: str) -> WorkloadFailed:
    """The error of a change that was taken back, recorded as an event (without the new version's log tail)."""
    await services.note(ts, change.before, "failed", message.split("; last log lines:", 1)[0])
    return WorkloadFailed(message, hint)


def _describe(exc: Exception, unexpected: str) -> str:
    if isinstance(exc, AgentHostError):
        return f"[{exc.code}] {exc.message}"
    log.exception("service update: %s", unexpected)
    return f"{unexpected} ({type(exc).__name__})"
