"""Applying a service update, and taking it back when the new version does not come up.

The new spec and env are recorded, then redeployed. When that raises (the engine refuses the new
image, command or user; the backend fails half-way) or, with ``wait``, the new version comes up
failed, the previous spec and env are recorded again and redeployed, and the caller gets an error
that says so. Records are restored first, so even when the second deploy fails too the reconciler
brings back the previous version, never the broken one.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..errors import AgentHostError, WorkloadFailed
from ..models import ServiceRecord, ServiceSpec
from ..progress import Reporter
from ..store import TenantStore
from .requests import UpdateRequest

__all__ = ["Redeployer", "apply_update"]

log = logging.getLogger(__name__)

_HINT = "fix the new image, command or env and call update_service again"


class Redeployer(Protocol):
    async def redeploy(self, ts: TenantStore, rec: ServiceRecord, wait: bool, report: Reporter) -> ServiceRecord: ...


async def apply_update(
    services: Redeployer,
    ts: TenantStore,
    rec: ServiceRecord,
    new_spec: ServiceSpec,
    req: UpdateRequest,
    report: Reporter,
) -> ServiceRecord:
    """Record and redeploy ``new_spec`` with the env changes of ``req``.

    Raises: WorkloadFailed after a rollback, saying why the new version failed and in what state the
    previous one is.
    """
    old_spec, old_env = rec.spec, await ts.env.get_all(rec.id)
    await ts.services.update(rec.id, spec=new_spec)
    if req.env:
        await ts.env.set_many(rec.id, req.env)
    if req.unset_env:
        await ts.env.unset(rec.id, req.unset_env)
    await report(f"updating {rec.name}", None, None)
    try:
        updated = await services.redeploy(ts, await ts.services.get(rec.id), req.wait, report)
    except Exception as exc:  # whatever stopped the new version, the previous one must come back
        failure = _describe(exc, "the new version could not be started")
    else:
        if updated.status != "failed" or not req.wait:
            return updated
        failure = updated.last_error or "the new version failed"
    await report(f"{rec.name}: new version failed; restoring the previous one", None, None)
    await ts.services.update(rec.id, spec=old_spec, desired_state="running")
    await ts.env.unset(rec.id, list((await ts.env.get_all(rec.id)).keys()))
    await ts.env.set_many(rec.id, old_env)
    try:
        restored = await services.redeploy(ts, await ts.services.get(rec.id), True, report)
    except Exception as exc:
        raise WorkloadFailed(
            f"update of {rec.name} rolled back to its previous version, which did not start again either"
            f" ({_describe(exc, 'restoring it failed')}); the reconciler keeps trying. The new version: {failure}",
            "get_service shows its state; platform_status shows whether the engine is reachable",
        ) from exc
    raise WorkloadFailed(
        f"update of {rec.name} rolled back (service is {restored.status} on its previous version): {failure}", _HINT
    )


def _describe(exc: Exception, unexpected: str) -> str:
    if isinstance(exc, AgentHostError):
        return f"[{exc.code}] {exc.message}"
    log.exception("service update: %s", unexpected)
    return f"{unexpected} ({type(exc).__name__})"
