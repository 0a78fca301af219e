"""Nodes of the engine: capacity, runtimes and whether they take new work."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from orchestrator.backends.base import NodeDrain, NodeInfo

from ..registry import Call, tool


class NodeList(BaseModel):
    nodes: list[NodeInfo]


@tool(read_only=True, admin_only=True, title="List nodes")
async def list_nodes(call: Call) -> NodeList:
    """Admin: the engine's nodes (Docker: one; Nomad: the clients) with status, eligibility, CPU, memory,
    drivers, runtimes."""
    return NodeList(nodes=await call.platform.nodes.list())


@tool(admin_only=True, idempotent=True, title="Set node eligibility")
async def set_node_eligibility(
    call: Call,
    node: Annotated[str, Field(min_length=1, max_length=64, description="node id, id prefix or name")],
    eligible: Annotated[bool, Field(description="false: no new work is placed there; running work stays")],
) -> NodeInfo:
    """Admin (Nomad): mark a node eligible or ineligible for new workloads, e.g. before maintenance (eligible
    also ends a drain)."""
    changed = await call.platform.nodes.set_eligibility(node, eligible)
    call.platform.status.forget_engine_facts()  # platform_status counts eligible nodes
    return changed


@tool(admin_only=True, destructive=True, title="Drain node")
async def drain_node(
    call: Call,
    node: Annotated[str, Field(min_length=1, max_length=64, description="node id, id prefix or name")],
    deadline_s: Annotated[int, Field(ge=0, le=86400, description="what has not moved stops after this")] = 300,
) -> NodeDrain:
    """Admin (Nomad): move the tenants on a node, and their databases' data (through S3 backups), elsewhere, then
    drain it. Lists what moved, and what could not and why."""
    drained = await call.platform.nodes.drain(node, deadline_s, call.report)
    call.platform.status.forget_engine_facts()
    return drained
