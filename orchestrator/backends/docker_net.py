"""Networks and egress policy on one Docker host.

Every workload that may talk to the outside joins one shared egress bridge per policy
(``ah-eg-open``, ``ah-eg-web``, ``ah-eg-none``): inter-container traffic on those bridges
is off, so tenants sharing one cannot reach each other, and iptables rules keyed on the
bridge's fixed interface name enforce the policy. East-west traffic between one tenant's
workloads uses that tenant's own *internal* bridge (no route out, isolated from every
other network by Docker). A workload with egress ``none``, no ports and no tenant
network (a sandbox) gets no network at all.

The rules are keyed on interface names, not container addresses, so they never go stale
when a container restarts with a new address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess

import docker
import docker.errors

from ..errors import AgentHostError
from ..models import Egress

__all__ = [
    "EGRESS_BRIDGES",
    "egress_network_name",
    "ensure_bridge",
    "ensure_egress_rules",
    "iptables_available",
    "tenant_bridge_name",
]

Subnets = ipaddress.IPv4Network | ipaddress.IPv6Network

EGRESS_BRIDGES: dict[Egress, str] = {"open": "ah-eg-open", "web": "ah-eg-web", "none": "ah-eg-none"}
_WEB_PORTS = "80,443"


def egress_network_name(policy: Egress) -> str:
    return EGRESS_BRIDGES[policy]


def tenant_bridge_name(network_name: str) -> str:
    """Linux caps interface names at 15 characters; derive a stable one from the network name."""
    return "ahT" + hashlib.sha256(network_name.encode()).hexdigest()[:12]


def iptables_available() -> bool:
    return shutil.which("iptables") is not None


def _rule_present(chain: str, rule: list[str]) -> bool:
    return subprocess.run(["iptables", "-C", chain, *rule], capture_output=True).returncode == 0


def _ensure(chain: str, rule: list[str]) -> None:
    if not _rule_present(chain, rule):
        subprocess.run(["iptables", "-I", chain, "1", *rule], check=True, capture_output=True)


def ensure_egress_rules() -> None:
    """Install the egress rules (idempotent). Raises CalledProcessError when iptables refuses.

    Rules are inserted at the top of their chain, so the last one inserted is evaluated first.
    """
    subprocess.run(["iptables", "-N", "DOCKER-USER"], capture_output=True)  # exists once dockerd ran
    web, none = EGRESS_BRIDGES["web"], EGRESS_BRIDGES["none"]
    # Forwarded traffic (to anything beyond the host) from restricted bridges.
    _ensure("DOCKER-USER", ["-i", none, "-j", "DROP"])
    _ensure("DOCKER-USER", ["-i", web, "-j", "DROP"])
    _ensure("DOCKER-USER", ["-i", web, "-p", "tcp", "-m", "multiport", "--dports", _WEB_PORTS, "-j", "RETURN"])
    _ensure("DOCKER-USER", ["-i", web, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"])
    _ensure("DOCKER-USER", ["-i", none, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"])
    # New connections from any agenthost bridge to the host itself (its daemons, the control plane).
    # Replies to the port publisher (which connects *to* the container) stay allowed.
    _ensure("INPUT", ["-i", "ah+", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"])


def ensure_bridge(
    client: docker.DockerClient,
    name: str,
    labels: dict[str, str],
    *,
    internal: bool,
    bridge: str,
    pool: Subnets,
    prefix: int,
) -> None:
    """Create the bridge network ``name`` unless it exists: a tenant's (internal, containers talk,
    a subnet from ``pool``) or a shared egress bridge (routed out, containers kept apart)."""
    if client.networks.list(names=[name]):
        return
    # Docker's default pools hand each network a /16 and run dry after ~30 networks: tenant
    # networks take small subnets from a pool of their own instead.
    for attempt in range(5):
        ipam = _tenant_ipam(client, pool, prefix) if internal else None
        try:
            client.networks.create(
                name,
                driver="bridge",
                internal=internal,
                ipam=ipam,
                labels=labels,
                options={
                    "com.docker.network.bridge.name": bridge,
                    # Shared egress bridges carry several tenants: no traffic between their containers.
                    "com.docker.network.bridge.enable_icc": "true" if internal else "false",
                },
            )
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409 or client.networks.list(names=[name]):
                return  # created concurrently
            if "overlap" not in str(exc.explanation) or attempt == 4:
                raise
            # Another process took the same free subnet a moment ago: pick again.


def _tenant_ipam(client: docker.DockerClient, pool: Subnets, prefix: int) -> docker.types.IPAMConfig:
    used = [
        ipaddress.ip_network(cfg["Subnet"], strict=False)
        for net in client.networks.list()
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []
        if cfg.get("Subnet")
    ]
    for subnet in pool.subnets(new_prefix=prefix):
        if not any(subnet.overlaps(u) for u in used):
            return docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
    raise AgentHostError(
        f"the tenant network pool {pool} is exhausted",
        "an operator must widen AGENTHOST_TENANT_NETWORK_POOL or remove unused tenants",
    )
