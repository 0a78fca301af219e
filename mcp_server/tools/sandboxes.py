"""Sandboxes: ephemeral isolated containers, served from a warm pool."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from orchestrator.models import Deleted, ResourceName
from orchestrator.sandboxes import Network, Sandbox, SandboxList, SandboxRequest

from ..registry import Call, tool
from .args import Confirm, SandboxRef


@tool(title="Create sandbox")
async def create_sandbox(
    call: Call,
    name: ResourceName | None = None,
    image: Annotated[str | None, Field(max_length=256, description="default: python")] = None,
    memory_mb: Annotated[int | None, Field(ge=32, le=16384)] = None,
    cpus: Annotated[float | None, Field(gt=0, le=16)] = None,
    network: Network = "none",
    ttl_s: Annotated[int | None, Field(ge=10, le=86400, description="default 3600")] = None,
) -> Sandbox:
    """A gVisor container to exec in: read-only image, writable /workspace; network none (loopback only) or
    egress (the internet, not the LAN). Default shape (512 MB, 1 CPU) comes from a warm pool. Deleted after ttl_s."""
    req = SandboxRequest(name=name, image=image, memory_mb=memory_mb, cpus=cpus, network=network, ttl_s=ttl_s)
    return await call.platform.sandboxes.create(call.principal, req)


@tool(read_only=True, title="List sandboxes")
async def list_sandboxes(call: Call) -> SandboxList:
    """Your sandboxes."""
    return SandboxList(sandboxes=await call.platform.sandboxes.list(call.principal))


@tool(read_only=True, title="Get sandbox")
async def get_sandbox(call: Call, sandbox: SandboxRef) -> Sandbox:
    """One sandbox: status, image, limits and expires_at."""
    return await call.platform.sandboxes.view(call.principal, sandbox)


@tool(title="Extend sandbox")
async def extend_sandbox(
    call: Call, sandbox: SandboxRef, ttl_s: Annotated[int, Field(ge=10, description="from now")]
) -> Sandbox:
    """Keep a sandbox until ttl_s from now (up to the operator's maximum)."""
    return await call.platform.sandboxes.extend(call.principal, sandbox, ttl_s)


async def _ask_delete(call: Call, sandbox: str, **_: Any) -> str:
    rec = await call.platform.sandboxes.get(call.principal, sandbox)
    return f"Delete sandbox {rec.name!r} and ALL the files in its /workspace? This cannot be undone."


@tool(destructive=True, idempotent=True, title="Delete sandbox", ask=_ask_delete)
async def delete_sandbox(call: Call, sandbox: SandboxRef, confirm: Confirm = False) -> Deleted:
    """Delete a sandbox and its /workspace."""
    return await call.platform.sandboxes.delete(call.principal, sandbox)
