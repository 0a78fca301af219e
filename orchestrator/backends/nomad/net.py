"""Networks of Nomad workloads: which Docker network a task joins, and the tenant networks on the nodes.

Nomad has no per-tenant private network of its own, so the backend brings the Docker backend's
design to each node: a tenant's services and databases join that tenant's own Docker bridge
(``ah-net-<tenant>``), under their names as network aliases, so a linked service reaches its
database as ``<name>:<port>`` through Docker's DNS. Docker keeps bridges apart, so no other
tenant has a route or a name to it. The bridge is created on whichever node the job lands by a
``prestart`` task of the job itself (platform code with a fixed argv, runc, the node's Docker
socket; the tenant can neither exec into it nor change it), so the scheduler stays free to place.

One bridge per tenant and node is also the limit: a tenant's workloads reach each other only on
the same node; nomad/README.md says how to run a multi-node cluster with that.

Other workloads: egress ``open`` without a tenant network joins the node's shared agenthost
bridge (inter-container traffic off); egress ``none`` without ports gets no network at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidInput
from ...labels import tenant_bridge_name
from ..base import WorkloadSpec
from .node_scripts import ENGINE_API

__all__ = ["NET_SCRIPT", "NET_TASK", "NodeNetworks", "TenantNetworks", "network_variables"]

NET_TASK = "net"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")

# Runs in the prestart task: create the tenant's bridge on this node unless it is there. Two jobs
# of one tenant may start at once: a name conflict means the other one made it, a subnet clash
# that another network took the subnet meanwhile; either way, look again. Nomad replaces ${...}
# in a task's args at run time, so this text must never hold a dollar-brace pair.
NET_SCRIPT = (
    ENGINE_API
    + r"""
import ipaddress, sys, time
name, bridge, tenant, instance, pool, prefix = sys.argv[1:7]
for _ in range(30):
    status, net = api("GET", "/networks/" + name)
    if status == 200:
        labels = net.get("Labels") or {}
        if labels.get("agenthost.tenant") != tenant or labels.get("agenthost.instance") != instance:
            sys.exit("network %s exists but belongs to someone else" % name)
        print("network %s is ready" % name)
        sys.exit(0)
    if status != 404:
        sys.exit("cannot inspect network %s: %s %s" % (name, status, net))
    _, nets = api("GET", "/networks")
    used = [ipaddress.ip_network(c["Subnet"], strict=False) for n in nets
            for c in ((n.get("IPAM") or {}).get("Config") or []) if c.get("Subnet")]
    free = next((s for s in ipaddress.ip_network(pool).subnets(new_prefix=int(prefix))
                 if not any(s.overlaps(u) for u in used)), None)
    if free is None:
        sys.exit("the tenant network pool %s is exhausted on this node" % pool)
    status, out = api("POST", "/networks/create", {
        "Name": name, "Driver": "bridge", "CheckDuplicate": True, "Internal": False,
        "Labels": {"agenthost.managed": "true", "agenthost.instance": instance, "agenthost.tenant": tenant,
                   "agenthost.nomad-network": "true"},
        "Options": {"com.docker.network.bridge.name": bridge, "com.docker.network.bridge.enable_icc": "true"},
        "IPAM": {"Config": [{"Subnet": str(free)}]}})
    if status in (200, 201):
        print("created network %s (%s)" % (name, free))
        sys.exit(0)
    time.sleep(0.3)
sys.exit("could not create network %s: %s" % (name, out))
"""
)


class NodeNetworks:
    """The backend's part: tenant networks are made on the node a job lands on, by the job's own prestart
    task (``net``), since the control plane has no Docker socket of the nodes to make them ahead."""

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        return None

    async def remove_network(self, name: str) -> bool:
        """The bridges live on the nodes, which the control plane cannot reach."""
        return False

    async def list_networks(self, labels: dict[str, str]) -> list[str]:
        """None the control plane could remove: see remove_network."""
        return []


@dataclass(frozen=True)
class TenantNetworks:
    """What the prestart task needs to create a tenant network: the image it runs and the subnets."""

    helper_image: str
    instance: str
    pool: str = "10.213.0.0/16"
    prefix: int = 24


def _base() -> dict[str, Any]:
    return {"hostname": "", "network_aliases": [], "tenant_network": "", "helper_image": "", "helper_args": []}


def network_variables(spec: WorkloadSpec, nets: TenantNetworks) -> dict[str, Any]:
    """The template's network variables for ``spec``. Raises: InvalidInput for what Nomad cannot do safely."""
    hostname = spec.network_aliases[0] if spec.network_aliases else ""
    if spec.network and (spec.egress == "open" or spec.kind == "database"):
        # A database asks for egress 'none'; on Nomad it shares its tenant's bridge, which routes out
        # like the tenant's services do (nomad/README.md), and still has no path to other tenants.
        if not _NAME.match(spec.network):
            raise InvalidInput(f"invalid network name {spec.network!r}")
        if any(not _NAME.match(a) for a in spec.network_aliases):
            raise InvalidInput(f"invalid network alias in {spec.network_aliases!r}")
        args = [
            "python3",
            "-c",
            NET_SCRIPT,
            spec.network,
            tenant_bridge_name(spec.network),
            spec.tenant_id,
            nets.instance,
            nets.pool,
            str(nets.prefix),
        ]
        return {
            **_base(),
            "network_mode": spec.network,
            "hostname": hostname,
            "network_aliases": spec.network_aliases,
            "tenant_network": spec.network,
            "helper_image": nets.helper_image,
            "helper_args": args,
        }
    if spec.egress == "open":
        return {**_base(), "network_mode": "isolated", "hostname": hostname}
    if spec.egress == "none" and not spec.ports:
        return {**_base(), "network_mode": "none"}
    raise InvalidInput(
        f"egress policy {spec.egress!r} cannot be enforced by the Nomad backend"
        + (" for a workload with published ports" if spec.egress == "none" else ""),
        "use egress='open' (or 'none' without ports) on Nomad",
    )
