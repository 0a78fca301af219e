"""The event log (what happened to your services, databases, builds, backups and sandboxes) and, for admins,
the audit log (which key called which tool)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.events import AuditPage, EventPage

from ..registry import Call, tool


@tool(read_only=True, title="List events")
async def list_events(
    call: Call,
    # Checked by EventLog (a clear invalid_input), not shown in the schema, which every agent reads.
    kind: str | None = None,
    target: Annotated[str | None, Field(min_length=1, max_length=64)] = None,
    limit: int = 50,
    before: int | None = None,
) -> EventPage:
    """Newest first."""
    ts = call.platform.store.scoped(call.principal.tenant_id)
    return await call.platform.events.page(ts, kind, target, limit, before)


@tool(read_only=True, admin_only=True, title="List audit")
async def list_audit(
    call: Call,
    tenant: Annotated[str | None, Field(min_length=1, max_length=64, description="tenant name; all if omitted")] = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 50,
    before: Annotated[int | None, Field(ge=1, description="the last id of the previous page")] = None,
) -> AuditPage:
    """Admin: the audit log, newest first: which key called which tool on what target, and the outcome."""
    return await call.platform.events.audit(call.principal, tenant, limit, before)
