"""Who am I, and how is the platform."""

from __future__ import annotations

from orchestrator.models import PlatformStatus, WhoAmI

from ..registry import Call, tool


@tool(read_only=True, title="Who am I")
async def whoami(call: Call) -> WhoAmI:
    """Your tenant, role, key scope, quotas and current usage."""
    return await call.platform.tenants.whoami(call.principal, await call.platform.usage(call.principal))


@tool(read_only=True, title="Platform status")
async def platform_status(call: Call) -> PlatformStatus:
    """Engine reachability, runtimes (runsc, sysbox-runc), disk, counts, open circuit breakers. Check it when a
    tool reports backend_unavailable or runtime_unavailable."""
    return await call.platform.status(call.principal)
