"""The engine's nodes: listed for everyone, made eligible for new work or not by admins (Nomad)."""

from __future__ import annotations

from .backends.base import Backend, NodeInfo
from .errors import InvalidInput, NotFound

__all__ = ["Nodes"]


class Nodes:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def list(self) -> list[NodeInfo]:
        return await self.backend.nodes()

    async def set_eligibility(self, node: str, eligible: bool) -> NodeInfo:
        """``node`` is a node id, a unique id prefix, or a name. Raises: NotFound, InvalidInput."""
        nodes = await self.backend.nodes()
        found = [n for n in nodes if n.id == node or n.name == node] or [n for n in nodes if n.id.startswith(node)]
        if not found:
            raise NotFound(f"no node {node!r}", "list_nodes shows the nodes")
        if len(found) > 1:
            raise InvalidInput(f"{node!r} matches {len(found)} nodes", "use the full node id")
        return await self.backend.set_node_eligibility(found[0].id, eligible)
