"""Whether a workload's limits fit on any node at all, the same check on every backend.

A workload asks for ``cpus`` and ``memory_mb`` as limits. Asking for more than the biggest ready node
has can never be placed, whatever else runs: refused before anything is made, as ``no_capacity`` with
the numbers.
"""

from __future__ import annotations

from ..errors import NoCapacity
from .base import NodeInfo, WorkloadSpec

__all__ = ["check_node_size"]


def check_node_size(spec: WorkloadSpec, nodes: list[NodeInfo]) -> None:
    """Raises: NoCapacity when no ready, eligible node has ``spec.cpus`` cores and ``spec.memory_mb`` memory.

    Nodes that report no size (0) are left to the engine to judge; with no ready node the engine's own
    placement says why."""
    ready = [n for n in nodes if n.status == "ready" and n.eligible and n.cpus > 0 and n.memory_mb > 0]
    if not ready or any(spec.cpus <= n.cpus and spec.memory_mb <= n.memory_mb for n in ready):
        return
    sizes = "; ".join(f"node {n.name or n.id}: {n.cpus:g} cores, {n.memory_mb} MB memory" for n in ready)
    biggest_cpus = max(n.cpus for n in ready)
    biggest_memory = max(n.memory_mb for n in ready)
    raise NoCapacity(
        f"no node is big enough for {spec.kind} {spec.id}: it asks for {spec.cpus:g} cpus and {spec.memory_mb} MB"
        f" memory; {sizes}",
        f"ask for at most {biggest_cpus:g} cpus and {biggest_memory} MB memory_mb (the biggest node);"
        " for more, an operator must add a bigger node",
    )
