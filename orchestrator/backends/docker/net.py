"""Networks and egress policy on one Docker host.

Every workload that may talk to the outside joins one shared egress bridge per policy
(``ah-eg-open``, ``ah-eg-web``, ``ah-eg-none``): inter-container traffic on those bridges
is off, so tenants sharing one cannot reach each other, and iptables rules keyed on the
bridge's fixed interface name enforce the policy. East-west traffic between one tenant's
workloads uses that tenant's own *internal* bridge (no route out, isolated from every
other network by Docker). A workload with egress ``none``, no ports and no tenant
network (a sandbox) gets no network at all.

The rules are keyed on interface names, not container addresses, so they never go stale
when a container restarts with a new address; what they hold is in egress.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors

from ...errors import AgentHostError, NotSupported
from ...models import Egress
from .egress import apply_egress_rules, describe_rules, egress_filter_available, host_plan

__all__ = [
    "EGRESS_BRIDGES",
    "EgressFilter",
    "NetworkGone",
    "attached_policy",
    "egress_network_name",
    "ensure_bridge",
    "network_gone",
    "remove_network_sync",
]

Subnets = ipaddress.IPv4Network | ipaddress.IPv6Network

EGRESS_BRIDGES: dict[Egress, str] = {"open": "ah-eg-open", "web": "ah-eg-web", "none": "ah-eg-none"}


def egress_network_name(policy: Egress) -> str:
    return EGRESS_BRIDGES[policy]


def attached_policy(container_attrs: dict[str, Any]) -> Egress | None:
    """The egress policy of the shared bridge a container is on ('open' for a bridge of someone
    else's), or None when it has no network (``none``)."""
    settings = container_attrs.get("HostConfig") or {}
    mode = str(settings.get("NetworkMode") or "")
    if mode == "none":
        return None
    attached = set((container_attrs.get("NetworkSettings") or {}).get("Networks") or {}) | {mode}
    return next((p for p, bridge in EGRESS_BRIDGES.items() if bridge in attached), "open")


class EgressFilter:
    """The host's egress rules, converged once per process before its first workload with a network
    (service, database, egress sandbox or build), whatever that workload's policy."""

    def __init__(
        self, allow: Sequence[str] = (), protected: Sequence[str] = (), allow_unfiltered: bool = False
    ) -> None:
        self.allow, self.protected, self.allow_unfiltered = list(allow), list(protected), allow_unfiltered
        self._ready = False
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return egress_filter_available()

    def apply(self) -> bool:
        """Converge the host's rules now. Returns whether anything changed.

        Raises: NotSupported without iptables; AgentHostError when iptables refuses.
        """
        if not self.available:
            raise NotSupported(
                "egress cannot be filtered on this host: iptables is missing",
                "an operator must install iptables (or set AGENTHOST_ALLOW_UNFILTERED_EGRESS=true to accept "
                "egress 'open' workloads that reach the host's LAN and cloud metadata)",
            )
        return apply_egress_rules(host_plan(self.allow, self.protected))

    def describe(self) -> str:
        """The rules apply() would install on a host that has none, as iptables-restore input."""
        return describe_rules(host_plan(self.allow, self.protected))

    def ensure(self, policy: Egress) -> None:
        """Before a workload with egress ``policy`` joins a bridge. Raises: NotSupported, AgentHostError."""
        with self._lock:
            if self._ready:
                return
            if not self.available:
                if policy == "open" and self.allow_unfiltered:
                    return  # the operator accepted an unfiltered host
                raise NotSupported(
                    f"egress {policy!r} cannot be enforced on this host: iptables is missing",
                    "use egress='open' (the operator accepted unfiltered egress)"
                    if self.allow_unfiltered
                    else "an operator must install iptables (or set AGENTHOST_ALLOW_UNFILTERED_EGRESS=true to "
                    "accept egress 'open' workloads that reach the host's LAN and cloud metadata)",
                )
            self.apply()
            self._ready = True


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
    # networks take small subnets from a pool of their own instead. Picking a free subnet and taking it
    # is one step per process, or concurrent first deploys pick the same one ("Pool overlaps"). Another
    # process, or a network being removed, may still hold the one picked: then the next free one.
    refused: list[Subnets] = []
    for attempt in range(5):
        with _SUBNET_LOCK if internal else contextlib.nullcontext():
            subnet = _free_subnet(client, pool, prefix, refused) if internal else None
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))]) if subnet else None
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
                if "overlap" not in str(exc.explanation) or subnet is None or attempt == 4:
                    raise
                refused.append(subnet)


_SUBNET_LOCK = threading.Lock()


def _free_subnet(client: docker.DockerClient, pool: Subnets, prefix: int, refused: list[Subnets]) -> Subnets:
    used = refused + [
        ipaddress.ip_network(cfg["Subnet"], strict=False)
        for net in client.networks.list()
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []
        if cfg.get("Subnet")
    ]
    for subnet in pool.subnets(new_prefix=prefix):
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise AgentHostError(
        f"the tenant network pool {pool} is exhausted",
        "an operator must widen AGENTHOST_TENANT_NETWORK_POOL or remove unused tenants",
    )


class NetworkGone(Exception):
    """A container could not be created or started because its network was removed meanwhile."""

    def __init__(self, cause: docker.errors.APIError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def network_gone(exc: docker.errors.APIError) -> bool:
    return isinstance(exc, docker.errors.NotFound) and "network" in str(exc.explanation or "").lower()


def remove_network_sync(client: docker.DockerClient, name: str, own: dict[str, str]) -> bool:
    """Remove this platform's network ``name``; False when there is none, or a running container is on it
    (Docker refuses then; containers that are merely created or stopped do not hold it)."""
    filters = {"label": [f"{k}={v}" for k, v in own.items()]}
    removed = False
    for net in client.networks.list(names=[name], filters=filters):
        if net.name != name:
            continue  # names=[...] matches by prefix
        try:
            net.remove()
            removed = True
        except docker.errors.NotFound:
            pass  # removed concurrently
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc.explanation or ""):
                raise
    return removed
