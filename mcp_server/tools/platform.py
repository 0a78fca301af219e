"""Who am I, and how is the platform."""

from __future__ import annotations

from orchestrator.models import WhoAmI
from orchestrator.status import PlatformStatus

from ..registry import Call, tool


@tool(read_only=True, title="Who am I")
async def whoami(call: Call) -> WhoAmI:
    """Your tenant, role, key scope, quotas and current usage."""
    return await call.platform.tenants.whoami(call.principal, await call.platform.status.usage(call.principal))


@tool(read_only=True, title="Platform status")
async def platform_status(call: Call) -> PlatformStatus:
    """Engine reachability, runtimes, disk, counts, open circuit breakers: check it after backend_unavailable
    or runtime_unavailable."""
    return await call.platform.status.report(call.principal)
