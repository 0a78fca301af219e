"""What a backend on one host answers to the node operations of a cluster: there is no other node."""

from __future__ import annotations

from ...errors import InvalidInput
from ..base import NodeDrain, NodeInfo

__all__ = ["SingleHost"]


class SingleHost:
    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        raise InvalidInput(
            "the Docker backend runs on one host: there is no other node to move work to",
            "node eligibility is a Nomad backend feature",
        )

    async def drain_node(self, node_id: str, deadline_s: int) -> NodeDrain:
        raise InvalidInput(
            "the Docker backend runs on one host: there is no other node to move work to",
            "draining nodes is a Nomad backend feature",
        )

    async def relocate_tenants(self) -> dict[str, int]:
        return {}  # one host: no node to move to

    async def volumes_on(self, node_id: str) -> list[str]:
        return []  # the one host is no node a drain empties

    async def release_volume(self, name: str, keep_copy: bool = False) -> str | None:
        return None  # a volume lives on the one host, lost only with it

    async def reclaim_volume(self, name: str, node_id: str) -> None:
        return None

    async def drop_copy(self, name: str, node_id: str) -> None:
        return None
