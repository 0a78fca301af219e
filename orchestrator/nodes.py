"""The engine's nodes: listed for everyone, made eligible for new work or drained by admins (Nomad).

A drain moves each tenant on the node as a whole to another node first (their networked workloads share
one node on Nomad, docs/backends.md), then lets the engine stop what is left by the deadline; workloads
whose data lives on the node cannot follow, and the report names them.
"""

from __future__ import annotations

from .backends.base import Backend, NodeDrain, NodeInfo
from .errors import InvalidInput, NotFound

__all__ = ["Nodes"]


class Nodes:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def list(self) -> list[NodeInfo]:
        return await self.backend.nodes()

    async def _find(self, node: str) -> NodeInfo:
        nodes = await self.backend.nodes()
        found = [n for n in nodes if n.id == node or n.name == node] or [n for n in nodes if n.id.startswith(node)]
        if not found:
            raise NotFound(f"no node {node!r}", "list_nodes shows the nodes")
        if len(found) > 1:
            raise InvalidInput(f"{node!r} matches {len(found)} nodes", "use the full node id")
        return found[0]

    async def set_eligibility(self, node: str, eligible: bool) -> NodeInfo:
        """``node`` is a node id, a unique id prefix, or a name. Raises: NotFound, InvalidInput."""
        return await self.backend.set_node_eligibility((await self._find(node)).id, eligible)

    async def drain(self, node: str, deadline_s: int) -> NodeDrain:
        """Move the tenants on ``node`` elsewhere and drain it. Raises: NotFound, InvalidInput (also on Docker)."""
        return await self.backend.drain_node((await self._find(node)).id, deadline_s)

    async def relocate(self) -> dict[str, int]:
        """A reconciler pass: tenants on nodes that are down or draining move to another node."""
        return await self.backend.relocate_tenants()
