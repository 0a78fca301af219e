"""Nomad nodes as ``NodeInfo``, and why the scheduler could not place a job, in words an agent can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import AgentHostError, RuntimeUnavailable
from ..base import BackendInfo, NodeInfo

if TYPE_CHECKING:
    from .api import NomadApi

__all__ = ["KNOWN_RUNTIMES", "agent_info", "list_nodes", "node_info", "placement_error"]

KNOWN_RUNTIMES = {"runc", "runsc", "sysbox-runc"}


def _runtimes(node: dict[str, Any]) -> list[str]:
    docker = (node.get("Drivers") or {}).get("docker") or {}
    if not docker.get("Healthy"):
        return []
    present = set(str((docker.get("Attributes") or {}).get("driver.docker.runtimes", "")).split(","))
    # The docker plugin only runs runtimes its allow_runtimes lists; agenthost's client configs
    # mirror that list in meta. Without it only Nomad's default (runc) is certain.
    allowed_meta = (node.get("Meta") or {}).get("agenthost.runtimes")
    allowed = set(allowed_meta.split(",")) if allowed_meta else {"runc"}
    return sorted(present & allowed & KNOWN_RUNTIMES)


def node_info(node: dict[str, Any]) -> tuple[NodeInfo, float]:
    """The node as agenthost shows it, and the MHz of one of its cores (Nomad's unit of CPU)."""
    resources = node.get("NodeResources") or {}
    cpu = resources.get("Cpu") or {}
    attrs = node.get("Attributes") or {}
    cores = int(cpu.get("TotalCpuCores") or attrs.get("cpu.numcores") or 0)
    shares = float(cpu.get("CpuShares") or attrs.get("cpu.totalcompute") or 0)
    drivers = sorted(name for name, d in (node.get("Drivers") or {}).items() if d.get("Detected") and d.get("Healthy"))
    info = NodeInfo(
        id=str(node["ID"]),
        name=str(node.get("Name", "")),
        address=str(attrs.get("unique.network.ip-address") or node.get("HTTPAddr", "").rsplit(":", 1)[0]),
        status=str(node.get("Status", "unknown")),
        eligible=node.get("SchedulingEligibility") == "eligible",
        cpus=float(cores),
        memory_mb=int((resources.get("Memory") or {}).get("MemoryMB") or 0),
        runtimes=_runtimes(node),
        drivers=drivers,
        datacenter=node.get("Datacenter"),
        node_pool=node.get("NodePool"),
        draining=bool(node.get("Drain")),
    )
    return info, (shares / cores if cores else 0.0)


def list_nodes(api: NomadApi) -> tuple[list[NodeInfo], float]:
    """Every node, and the MHz of one core of the slowest ready, eligible one (1000 when there is none)."""
    infos: list[NodeInfo] = []
    per_core: list[float] = []
    for stub in api.get("nodes"):
        info, mhz = node_info(api.get("node", stub["ID"]))
        infos.append(info)
        if info.status == "ready" and info.eligible and mhz:
            per_core.append(mhz)
    return infos, min(per_core, default=1000.0)


def agent_info(api: NomadApi, node_pool: str) -> BackendInfo:
    """The agent's version, leader, region, and what this backend schedules into."""
    agent = api.get("agent", "self")
    leader = api.get("status", "leader")
    config = agent.get("config") or {}
    version = (config.get("Version") or {}).get("Version") or agent.get("member", {}).get("Tags", {}).get(
        "build", "unknown"
    )
    return BackendInfo(
        name="nomad",
        version=str(version),
        data_root=None,
        details={
            "address": api.address,
            "leader": str(leader or ""),
            "region": str(config.get("Region") or ""),
            "namespace": api.namespace,
            "node_pool": node_pool,
            "egress_note": "egress 'web' is not enforced on Nomad: services use 'open', sandboxes 'none';"
            " a tenant's databases share its services' network, which routes out; the nodes keep"
            " workloads off the host, its LAN and cloud metadata once an operator ran"
            " `agenthost egress apply` on each of them",
        },
    )


def placement_error(failed: dict[str, Any], runtime: str | None) -> AgentHostError:
    """Raises nothing: returns the error for the first task group the scheduler could not place."""
    metrics: dict[str, Any] = next(iter(failed.values()), {}) or {}
    constraints = " ".join((metrics.get("ConstraintFiltered") or {}).keys())
    exhausted = metrics.get("DimensionExhausted") or {}
    if not any((metrics.get("NodesAvailable") or {}).values()):
        return AgentHostError(
            "no Nomad client node is available in the configured datacenters and node pool",
            "an operator must start a client node (infra/nomad-cluster.sh) or fix AGENTHOST_NOMAD_DATACENTERS",
        )
    if "agenthost.runtimes" in constraints:
        return RuntimeUnavailable(f"no eligible Nomad node allows runtime {runtime!r}")
    if "agenthost.docker-network" in constraints:
        return AgentHostError(
            "no eligible Nomad node has the agenthost bridge network",
            "set up client nodes with infra/nomad-cluster.sh (client meta agenthost.docker-network)",
        )
    if "node.unique.id" in constraints:
        return AgentHostError(
            "the node this workload is pinned to (it holds its volumes, or runs the service it joins) cannot take it",
            "list_nodes shows whether it is down, ineligible or full",
        )
    if exhausted:
        what = ", ".join(sorted(exhausted))
        return AgentHostError(
            f"no Nomad node has room for this workload ({what} exhausted)",
            "ask for less memory_mb/cpus, free capacity, or add client nodes",
        )
    if metrics.get("NodesFiltered"):
        return AgentHostError(f"no Nomad node satisfies the job's constraints ({constraints or 'filtered'})")
    return AgentHostError(f"Nomad could not place the workload: {metrics}")
