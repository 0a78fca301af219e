"""MCP resource subscriptions: ``subscriptions/listen`` (protocol 2026-07-28) streams ResourceUpdated events of
the caller's tenant, from the event log.

Tenants are hostile, and resource URIs name services by name, which collide across tenants (two tenants may
each have a ``web``). So a listen stream is never fed from a process-wide bus: each stream authenticates its
caller and follows that tenant's own rows of the event log (``EventLog.watch``, scoped in the store), then
hands them to the SDK's ``ListenHandler`` on a bus of its own, which does the wire work (the ack first, the
subscription id on every frame, only the URIs the client asked for). Another tenant's change never reaches
the stream at all, whatever URI it asks for. Following the event log (rather than hooks in this process) also
delivers changes made by other processes on the same data dir: the reconciler of ``agenthost serve`` as seen
by an ``agenthost mcp`` session.

What is published, for every event of the tenant: ``agenthost://events``; for a service's event (deployed,
crashed, stopped, ...) also ``agenthost://services``, ``agenthost://services/<name>`` and
``agenthost://services/<id>``.

The handshake era's ``resources/subscribe`` (2025-11-25) is not served, so the capabilities of that era do
not advertise ``resources.subscribe`` (the SDK derives them from the handlers present).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, SubscriptionsListenRequestParams, SubscriptionsListenResult

from orchestrator.errors import AgentHostError
from orchestrator.events import EventLog
from orchestrator.fairness import TenantSlots
from orchestrator.models import Event, Principal
from orchestrator.store import TenantStore

from .state import AppState

__all__ = ["TENANT_RESOURCES", "TenantListen", "serve_subscriptions", "updated_uris"]

# Static resources read per tenant (uri → the tool that answers it), registered by app.py.
TENANT_RESOURCES = {
    "agenthost://platform/status": "platform_status",
    "agenthost://services": "list_services",
    "agenthost://events": "list_events",
}

PrincipalOf = Callable[[AppState, object], Awaitable[Principal]]


def updated_uris(event: Event) -> list[str]:
    """The resources an event changes."""
    if event.kind != "service":
        return ["agenthost://events"]
    one = "agenthost://services/"
    return ["agenthost://events", "agenthost://services", one + event.target, one + event.target_id]


async def _publish(events: EventLog, ts: TenantStore, cursor: int, bus: InMemorySubscriptionBus) -> None:
    async for event in events.watch(ts, cursor):
        for uri in updated_uris(event):
            await bus.publish(ResourceUpdated(uri=uri))


class TenantListen:
    """Serves ``subscriptions/listen``: one stream per call, fed only with its caller's tenant's events; at most
    ``mcp_sessions_per_tenant`` streams of one tenant at once in this process."""

    def __init__(self, principal_of: PrincipalOf) -> None:
        self._principal_of = principal_of
        self._streams: TenantSlots | None = None  # made at the first call, when the settings are known

    def _slots(self, state: AppState) -> TenantSlots:
        if self._streams is None:
            cap = state.platform.settings.mcp_sessions_per_tenant
            self._streams = TenantSlots("subscription streams", "mcp_sessions_per_tenant", cap)
        return self._streams

    async def __call__(
        self, ctx: ServerRequestContext[AppState, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        state = ctx.lifespan_context
        try:
            principal = await self._principal_of(state, ctx.request)
            with self._slots(state).hold(principal.tenant_id):
                ts = state.platform.store.scoped(principal.tenant_id)
                # The cursor is taken before the ack is sent: a change made once the client holds the ack is
                # after it, and so delivered.
                cursor = await ts.events.last_id()
                bus = InMemorySubscriptionBus()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_publish, state.platform.events, ts, cursor, bus)
                    result = await ListenHandler(bus)(ctx, params)
                    tg.cancel_scope.cancel()
                return result
        except AgentHostError as exc:
            raise MCPError(INVALID_REQUEST, str(exc), exc.to_dict()) from exc


def serve_subscriptions(mcp: MCPServer[AppState], principal_of: PrincipalOf) -> None:
    """Replace the SDK's process-wide listen handler with the tenant-scoped one."""
    # The low-level server is where the SDK registers (and lets one replace) a method's handler.
    mcp._lowlevel_server.add_request_handler(  # noqa: SLF001
        "subscriptions/listen", SubscriptionsListenRequestParams, TenantListen(principal_of)
    )
