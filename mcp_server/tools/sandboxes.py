"""Sandboxes: ephemeral isolated containers, served from a warm pool."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.models import Deleted, ResourceName
from orchestrator.sandboxes import Network, Sandbox, SandboxList, SandboxRequest

from ..registry import Call, tool
from .args import Confirm, SandboxRef


@tool(title="Create sandbox")
async def create_sandbox(
    call: Call,
    name: ResourceName | None = None,
    image: Annotated[str | None, Field(min_length=1, max_length=256, description="default: the python image")] = None,
    memory_mb: Annotated[int | None, Field(ge=32, le=16384, description="default 512")] = None,
    cpus: Annotated[float | None, Field(gt=0, le=16, description="default 1")] = None,
    network: Annotated[Network, Field(description="'none': no network at all; 'egress': outbound only")] = "none",
    ttl_s: Annotated[int | None, Field(ge=10, le=86400, description="deleted after this long (default 3600)")] = None,
) -> Sandbox:
    """Start an isolated gVisor container to run code in with exec(sandbox=...): read-only image, a writable
    /workspace (tmpfs), no capabilities. Default shape comes from a warm pool in well under a second. It is
    deleted after ttl_s; delete_sandbox when done."""
    req = SandboxRequest(name=name, image=image, memory_mb=memory_mb, cpus=cpus, network=network, ttl_s=ttl_s)
    return await call.platform.sandboxes.create(call.principal, req)


@tool(read_only=True, title="List sandboxes")
async def list_sandboxes(call: Call) -> SandboxList:
    """Your sandboxes with image, network, limits and expiry."""
    return SandboxList(sandboxes=await call.platform.sandboxes.list(call.principal))


@tool(destructive=True, idempotent=True, title="Delete sandbox")
async def delete_sandbox(call: Call, sandbox: SandboxRef, confirm: Confirm = False) -> Deleted:
    """Delete a sandbox: its container and everything in its /workspace."""
    rec = await call.platform.sandboxes.get(call.principal, sandbox)
    await call.confirm(confirm, f"Delete sandbox {rec.name!r} and the files in its /workspace?")
    return await call.platform.sandboxes.delete(call.principal, sandbox)
