"""What a workload reserves on a Nomad node, and what the nodes have free when none can take it.

Nomad places by reservation: a task's ``resources.cpu`` (MHz) and ``memory`` (MB) are taken from the
node's total whether the task uses them or not. Reserving a workload's whole ``cpus`` and ``memory_mb``
fits two 1-cpu sandboxes on a 2-core node, where Docker runs ten. So a workload reserves a share:

- CPU: ``cpu_share`` of its cpus (at least ``_MIN_CPU_MHZ``). Nomad 1.6's docker driver derives the CFS
  quota from the reservation (``cpu_hard_limit``), so a hard cap would be that share too: below a share
  of 1 the cap is off and the reservation is the container's CPU weight, proportional to the cpus asked.
  It runs on idle cores and gets its cpus' share of a busy node. A share of 1 reserves all and caps there.
- memory: where the cluster's scheduler allows memory oversubscription, ``memory_share`` of memory_mb
  is reserved and memory_mb is the hard limit (``memory_max``); elsewhere, and for databases (whose data
  an OOM kill would put at risk), all of memory_mb is reserved and is the limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import NoCapacity

if TYPE_CHECKING:
    from ..base import WorkloadSpec
    from .api import NomadApi

__all__ = [
    "Reservation",
    "Room",
    "Shares",
    "job_reservation",
    "memory_oversubscription",
    "no_capacity",
    "reservation",
    "room",
    "rooms",
]

_MIN_CPU_MHZ = 20
_MIN_MEMORY_MB = 32  # what is reserved at least (all of memory_mb when it is smaller)
_TERMINAL = ("complete", "failed", "lost")


@dataclass(frozen=True)
class Reservation:
    cpu_mhz: int
    memory_mb: int
    memory_max_mb: int = 0  # the hard limit when above memory_mb (oversubscription); 0: memory_mb is the limit
    cpu_hard_limit: bool = False


@dataclass(frozen=True)
class Room:
    """A ready, eligible node's CPU (MHz) and memory (MB): what it offers to tasks and what is free of it."""

    name: str
    cpu_mhz: int
    memory_mb: int
    free_cpu_mhz: int
    free_memory_mb: int
    mhz_per_core: float


def reservation(
    spec: WorkloadSpec, mhz_per_core: float, cpu_share: float, memory_share: float, oversubscription: bool
) -> Reservation:
    """What ``spec`` reserves on a node whose cores run at ``mhz_per_core``."""
    limit_mhz = max(1, math.ceil(spec.cpus * mhz_per_core))
    if cpu_share >= 1:
        cpu, hard = limit_mhz, True
    else:
        cpu, hard = min(limit_mhz, max(_MIN_CPU_MHZ, math.ceil(limit_mhz * cpu_share))), False
    if not oversubscription or spec.kind == "database" or memory_share >= 1:
        return Reservation(cpu, spec.memory_mb, 0, hard)
    memory = min(spec.memory_mb, max(_MIN_MEMORY_MB, math.ceil(spec.memory_mb * memory_share)))
    return Reservation(cpu, memory, spec.memory_mb if memory < spec.memory_mb else 0, hard)


class Shares:
    """The operator's shares (``AGENTHOST_NOMAD_CPU_SHARE`` / ``_MEMORY_SHARE``), and whether the cluster allows
    memory oversubscription, asked at most every ``ttl_s``."""

    def __init__(self, cpu: float = 1.0, memory: float = 1.0, ttl_s: float = 5.0) -> None:
        self.cpu, self.memory, self.ttl_s = cpu, memory, ttl_s
        self._oversubscription: tuple[float, bool] | None = None

    def reserve(self, api: NomadApi, node_pool: str, spec: WorkloadSpec, mhz_per_core: float) -> Reservation:
        """What ``spec`` reserves (in a worker thread: it may ask Nomad)."""
        now = time.monotonic()
        if self.memory < 1 and (self._oversubscription is None or now - self._oversubscription[0] >= self.ttl_s):
            self._oversubscription = (now, memory_oversubscription(api, node_pool))
        allowed = self.memory < 1 and self._oversubscription is not None and self._oversubscription[1]
        return reservation(spec, mhz_per_core, self.cpu, self.memory, allowed)


def memory_oversubscription(api: NomadApi, node_pool: str) -> bool:
    """Whether the scheduler lets tasks of ``node_pool`` use memory above their reservation (``memory_max``).

    A node pool's own scheduler configuration (Nomad Enterprise) wins over the cluster's."""
    config = (api.get("operator", "scheduler", "configuration") or {}).get("SchedulerConfig") or {}
    enabled = bool(config.get("MemoryOversubscriptionEnabled"))
    for pool in api.get("node", "pools") or []:
        if pool.get("Name") == node_pool:
            own = (pool.get("SchedulerConfiguration") or {}).get("MemoryOversubscriptionEnabled")
            return enabled if own is None else bool(own)
    return enabled


def _task_asks(resources: dict[str, Any]) -> tuple[int, int]:
    """(MHz, MB) of one task's allocated or requested resources."""
    if "Cpu" in resources:  # allocated: {"Cpu": {"CpuShares"}, "Memory": {"MemoryMB"}}
        return int((resources.get("Cpu") or {}).get("CpuShares") or 0), int(
            (resources.get("Memory") or {}).get("MemoryMB") or 0
        )
    return int(resources.get("CPU") or 0), int(resources.get("MemoryMB") or 0)


def _combined(tasks: list[tuple[tuple[int, int], dict[str, Any] | None]]) -> tuple[int, int]:
    """What a group holds, as Nomad counts it: a prestart task that exits lends its share to the main tasks."""
    main, ephemeral, sidecars = [0, 0], [0, 0], [0, 0]
    for (cpu, memory), lifecycle in tasks:
        into = main
        if lifecycle and lifecycle.get("Hook") == "prestart":
            into = sidecars if lifecycle.get("Sidecar") else ephemeral
        if into is ephemeral:
            into[0], into[1] = max(into[0], cpu), max(into[1], memory)
        else:
            into[0], into[1] = into[0] + cpu, into[1] + memory
    return sidecars[0] + max(main[0], ephemeral[0]), sidecars[1] + max(main[1], ephemeral[1])


def job_reservation(job: dict[str, Any]) -> tuple[int, int]:
    """(MHz, MB) a job's one task group reserves on a node."""
    group = (job.get("TaskGroups") or [{}])[0]
    return _combined([(_task_asks(t.get("Resources") or {}), t.get("Lifecycle")) for t in group.get("Tasks") or []])


def _alloc_reservation(alloc: dict[str, Any]) -> tuple[int, int]:
    allocated = alloc.get("AllocatedResources") or {}
    lifecycles = allocated.get("TaskLifecycles") or {}
    tasks = (allocated.get("Tasks") or {}).items()
    return _combined([(_task_asks(r or {}), lifecycles.get(name)) for name, r in tasks])


def room(node: dict[str, Any], allocs: list[dict[str, Any]]) -> Room:
    """The node's capacity for tasks (its resources less what the operator reserved) and what is free of it."""
    resources, reserved = node.get("NodeResources") or {}, node.get("ReservedResources") or {}
    cpu_total = int((resources.get("Cpu") or {}).get("CpuShares") or 0)
    cores = int((resources.get("Cpu") or {}).get("TotalCpuCores") or 0)
    cpu = cpu_total - int((reserved.get("Cpu") or {}).get("CpuShares") or 0)
    memory = int((resources.get("Memory") or {}).get("MemoryMB") or 0) - int(
        (reserved.get("Memory") or {}).get("MemoryMB") or 0
    )
    held = [
        _alloc_reservation(a)
        for a in allocs
        if a.get("DesiredStatus") == "run" and a.get("ClientStatus") not in _TERMINAL
    ]
    return Room(
        name=str(node.get("Name") or node.get("ID", "")),
        cpu_mhz=cpu,
        memory_mb=memory,
        free_cpu_mhz=cpu - sum(c for c, _ in held),
        free_memory_mb=memory - sum(m for _, m in held),
        mhz_per_core=cpu_total / cores if cores else 0.0,
    )


def rooms(api: NomadApi, node_pool: str) -> list[Room]:
    """The room of every ready, eligible node of ``node_pool``."""
    out = []
    for stub in api.get("nodes"):
        if stub.get("Status") != "ready" or stub.get("SchedulingEligibility") != "eligible":
            continue
        if node_pool not in ("", "all") and stub.get("NodePool", "default") != node_pool:
            continue
        out.append(room(api.get("node", stub["ID"]), api.get("node", stub["ID"], "allocations")))
    return out


def _cores(mhz: int, per_core: float) -> str:
    return f"{mhz / per_core:.2f} cores" if per_core else f"{mhz} MHz"


def no_capacity(what: str, asked: tuple[int, int], nodes: list[Room], exhausted: list[str]) -> NoCapacity:
    """The error for ``what`` reserving ``asked`` (MHz, MB) when no node had room; ``exhausted``: Nomad's words."""
    per_core = min((n.mhz_per_core for n in nodes if n.mhz_per_core), default=0.0)
    free = "; ".join(
        f"node {n.name}: {_cores(n.free_cpu_mhz, n.mhz_per_core)} ({n.free_cpu_mhz} MHz) of"
        f" {_cores(n.cpu_mhz, n.mhz_per_core)} and {n.free_memory_mb} MB of {n.memory_mb} MB memory"
        for n in nodes
    )
    return NoCapacity(
        f"no Nomad node has room for {what} ({', '.join(exhausted) or 'resources'} exhausted): it reserves"
        f" {_cores(asked[0], per_core)} ({asked[0]} MHz) CPU and {asked[1]} MB memory; free: {free or 'no ready node'}"
    )
