"""The Nomad backend's node operations: eligibility, drains with a deadline, moving tenants off lost nodes, and
removing the volume copies a lost node kept once it is back.

A drain first makes the node ineligible (nothing new lands there), then moves every tenant pinned to it
(``tenants.move_tenant``: its networked jobs are registered again on the tenant's new node, where Nomad
replaces their allocations), then asks Nomad to drain the node with the deadline: what is left there
(workloads held by their volumes, jobs of other platforms) stops at the deadline at the latest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ...errors import InvalidInput
from ...labels import L_ID, L_KIND, L_NAME, L_TENANT
from ..base import NodeDrain, NodeInfo, NodeWorkload
from .leftovers import record_left_copy, remove_left_copies
from .nodes import node_info
from .tenants import STRANDED, move_tenant, node_state, reclaim_volume, release_volume, tenants_on
from .volumes import NODE, list_volumes

if TYPE_CHECKING:
    from .api import NomadApi
    from .volume_jobs import NodeJobs

__all__ = ["NodeOperations"]

P = ParamSpec("P")
T = TypeVar("T")

# The node states a reconciler pass moves tenants off; an ineligible node keeps its running work.
_LOST = ("down", "draining", "gone")
_MAX_DEADLINE_S = 24 * 3600


def _workload(meta: dict[str, str]) -> NodeWorkload:
    return NodeWorkload(
        id=meta.get(L_ID, ""),
        tenant=meta.get(L_TENANT, ""),
        kind=meta.get(L_KIND, ""),
        name=meta.get(L_NAME),
        data_node=meta.get(NODE),
    )


class NodeOperations:
    """Mixed into ``NomadBackend``."""

    api: NomadApi
    instance: str
    node_pool: str
    node_jobs: NodeJobs
    _nodes: Any

    async def _run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError

    def _eligibility(self, node_id: str, eligible: bool) -> None:
        """Made eligible, a draining node's drain ends too (Nomad refuses eligibility while it drains)."""
        node = self.api.get("node", node_id)
        if eligible and (node.get("DrainStrategy") or node.get("Drain")):
            self.api.post("node", node_id, "drain", body={"NodeID": node_id, "DrainSpec": None, "MarkEligible": True})
        else:
            body = {"NodeID": node_id, "Eligibility": "eligible" if eligible else "ineligible"}
            self.api.post("node", node_id, "eligibility", body=body)
        self._nodes = None

    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        def update() -> NodeInfo:
            self._eligibility(node_id, eligible)
            return node_info(self.api.get("node", node_id))[0]

        return await self._run(f"set eligibility of node {node_id}", update)

    async def drain_node(self, node_id: str, deadline_s: int) -> NodeDrain:
        if not 0 <= deadline_s <= _MAX_DEADLINE_S:
            raise InvalidInput(f"deadline_s {deadline_s} is out of range", f"0 to {_MAX_DEADLINE_S} seconds")

        def drain() -> NodeDrain:
            self._eligibility(node_id, False)
            report = NodeDrain(node=node_info(self.api.get("node", node_id))[0])
            for tenant, _ in tenants_on(self.api, self.instance, node_id):
                moved = move_tenant(self.api, self.instance, self.node_pool, tenant)
                report.moved_to[tenant] = moved.node
                report.moved += [_workload(m) for m in moved.moved]
                report.stranded += [_workload(m) for m in moved.stranded]
            spec = {"Deadline": int(deadline_s * 1e9), "IgnoreSystemJobs": True}
            self.api.post("node", node_id, "drain", body={"NodeID": node_id, "DrainSpec": spec, "MarkEligible": False})
            self._nodes = None
            report.node = node_info(self.api.get("node", node_id))[0]
            return report

        return await self._run(f"drain node {node_id}", drain)

    async def relocate_tenants(self) -> dict[str, int]:
        def relocate() -> dict[str, int]:
            counts = {"tenants_moved": 0, "workloads_moved": 0, "workloads_stranded": 0}
            states: dict[str, str] = {}
            for tenant, items in tenants_on(self.api, self.instance):
                node, data = items[NODE], items.get(STRANDED, "")
                if states.setdefault(node, node_state(self.api, node)) in _LOST:
                    moved = move_tenant(self.api, self.instance, self.node_pool, tenant)
                elif data and states.setdefault(data, node_state(self.api, data)) == "ready":
                    # The node that holds its data is back: the tenant returns to it, whole again.
                    moved = move_tenant(self.api, self.instance, self.node_pool, tenant, to=data)
                else:
                    continue
                counts["tenants_moved"] += 1
                counts["workloads_moved"] += len(moved.moved)
                counts["workloads_stranded"] += len(moved.stranded)
            return counts

        counts = await self._run("move tenants off lost nodes", relocate)
        removed, failed = await remove_left_copies(self._run, self.api, self.node_jobs, self.instance)
        return counts | {"left_copies_removed": removed, "left_copies_failed": failed}

    async def volumes_on(self, node_id: str) -> list[str]:
        on_node = {NODE: node_id}
        return await self._run(f"list the volumes on node {node_id}", list_volumes, self.api, self.instance, on_node)

    async def release_volume(self, name: str, keep_copy: bool = False) -> str | None:
        def release() -> str | None:
            node = release_volume(self.api, self.instance, name)
            if node and not keep_copy:  # the data there is no volume's any more: removed when the node is back
                record_left_copy(self.api, self.instance, name, node)
            return node

        return await self._run(f"release volume {name}", release)

    async def reclaim_volume(self, name: str, node_id: str) -> None:
        def reclaim() -> None:
            since = reclaim_volume(self.api, self.instance, name, node_id)
            if since:  # the fresh copy made there meanwhile
                record_left_copy(self.api, self.instance, name, since)

        await self._run(f"reclaim volume {name} on {node_id}", reclaim)

    async def drop_copy(self, name: str, node_id: str) -> None:
        api, instance = self.api, self.instance
        await self._run(f"drop the copy of {name} on {node_id}", record_left_copy, api, instance, name, node_id)
