"""The engine's nodes: listed for everyone, made eligible for new work or drained by admins (Nomad).

A drain moves each tenant on the node as a whole to another node first (their networked workloads share
one node on Nomad, docs/backends.md), then lets the engine stop what is left by the deadline. A database
whose data is on the node moves with its tenant through the tenant's backup repository (``backups.moves``);
what cannot follow is named in the report.
"""

from __future__ import annotations

import anyio

from .backends.base import Backend, NodeDrain, NodeInfo
from .backups import DataMoves
from .errors import InvalidInput, NotFound
from .progress import Reporter, silent

__all__ = ["Nodes"]


class Nodes:
    def __init__(self, backend: Backend, moves: DataMoves) -> None:
        self.backend = backend
        self.moves = moves

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

    async def drain(self, node: str, deadline_s: int, report: Reporter = silent) -> NodeDrain:
        """Move the tenants on ``node`` and their databases' data elsewhere and drain it.

        Raises: NotFound, InvalidInput (also on Docker)."""
        node_id = (await self._find(node)).id
        moves = await self.moves.before_drain(node_id, report)
        try:
            drained = await self.backend.drain_node(node_id, deadline_s)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.moves.abandon(moves)
            raise
        return await self.moves.after_drain(moves, drained, report)

    async def relocate(self) -> dict[str, int]:
        """A reconciler pass: tenants on nodes that are down or draining move to another node."""
        return await self.backend.relocate_tenants()
