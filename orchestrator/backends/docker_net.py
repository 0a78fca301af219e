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

import shutil
import subprocess

from ..models import Egress

__all__ = ["EGRESS_BRIDGES", "egress_network_name", "ensure_egress_rules", "iptables_available", "tenant_bridge_name"]

EGRESS_BRIDGES: dict[Egress, str] = {"open": "ah-eg-open", "web": "ah-eg-web", "none": "ah-eg-none"}
_WEB_PORTS = "80,443"


def egress_network_name(policy: Egress) -> str:
    return EGRESS_BRIDGES[policy]


def tenant_bridge_name(network_name: str) -> str:
    """Linux caps interface names at 15 characters; derive a stable one from the network name."""
    import hashlib

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
