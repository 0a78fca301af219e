"""The host's egress filter: what traffic leaving agenthost's bridges may reach, in iptables.

Every agenthost bridge is named ``ah*`` (the shared egress bridges ``ah-eg-open|web|none``, the
tenant bridges ``ahT…``, a Nomad node's ``ahnomad…``). Two rules hook them:

* ``DOCKER-USER`` (which dockerd evaluates first in ``FORWARD``) jumps to the chain
  ``AGENTHOST-EGRESS`` for everything that comes in from ``ah+``. In order: replies return; traffic
  bridged within one bridge returns (Docker's inter-container setting decides: off on the shared
  egress bridges, on within a tenant's own bridge); ``none`` is refused; DNS to the resolvers dockerd
  forwards to returns (the embedded resolver at 127.0.0.11 sends a container's external queries from
  the container's own network namespace, through the bridge); ``web`` is refused anything but TCP
  80/443; the tenant network pool is refused; the operator's allowlist returns; the forbidden ranges
  and the host's own subnets are refused. Anything left is the internet.
* ``INPUT`` refuses new connections from ``ah+`` to the host itself (its daemons, the control plane,
  the registry). Replies to the port publisher, which connects *to* a container, still pass.

The allowlist only lifts the forbidden ranges: ``web`` stays 80/443 and ``none`` stays nothing. It
is host-wide, as iptables is: platforms sharing one host share one allowlist (the last to start
wins). Refused packets get an ICMP "administratively prohibited" answer, so a client fails at once
instead of waiting for a timeout (cloud SDKs probe the metadata address on start).

The chain is converged, never patched: when it differs from the desired rules it is rebuilt, with
the two hooks, in one ``iptables-restore --noflush`` transaction, so it is never half-written. IPv4
only: agenthost's bridges have no IPv6 addresses.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...errors import AgentHostError

__all__ = [
    "CHAIN",
    "FORBIDDEN",
    "EgressPlan",
    "HostChains",
    "apply_egress_rules",
    "chain_rules",
    "describe_rules",
    "egress_filter_available",
    "host_plan",
    "resolvers",
    "restore_script",
]

log = logging.getLogger(__name__)

CHAIN = "AGENTHOST-EGRESS"
BRIDGES = "ah+"
_WEB, _NONE = "ah-eg-web", "ah-eg-none"
_REJECT = "REJECT --reject-with icmp-admin-prohibited"
_JUMP = f"-A DOCKER-USER -i {BRIDGES} -j {CHAIN}"
_INPUT = f"-A INPUT -i {BRIDGES} -m conntrack --ctstate NEW -j {_REJECT}"
_LOCK = Path("/run/agenthost-egress.lock")

# Never reachable, whatever the policy; an operator's allowlist may open parts (the tenant pool excepted).
FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network': some stacks deliver it to the host itself"),
    ("10.0.0.0/8", "RFC 1918 private: the LAN, a VPC, agenthost's own tenant pool"),
    ("100.64.0.0/10", "RFC 6598 CGNAT: carrier and cloud internals (e.g. a metadata service at 100.100.100.200)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local: cloud metadata at 169.254.169.254, cloud DNS and time services"),
    ("172.16.0.0/12", "RFC 1918 private: the LAN, Docker's own bridges"),
    ("192.0.0.0/24", "IETF protocol assignments, never the internet"),
    ("192.168.0.0/16", "RFC 1918 private: the LAN, home and office routers"),
    ("198.18.0.0/15", "benchmarking range, used for internal networks"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, and the limited broadcast 255.255.255.255"),
    ("168.63.129.16/32", "Azure's platform endpoint (wire server, metadata): a public address that is the host's"),
)

Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class EgressPlan:
    """What the chain is made of."""

    allow: tuple[Net, ...] = ()  # the operator's allowlist (AGENTHOST_EGRESS_ALLOW)
    protected: tuple[Net, ...] = ()  # the tenant network pool: no allowlist opens it
    resolvers: tuple[ipaddress.IPv4Address, ...] = ()  # what dockerd's embedded DNS forwards to
    lan: tuple[Net, ...] = ()  # the host's own subnets not already forbidden


@dataclass(frozen=True)
class HostChains:
    """``iptables -S`` of the chains the filter touches (``chain`` None: ours does not exist)."""

    docker_user: list[str]
    input: list[str]
    chain: list[str] | None


def chain_rules(plan: EgressPlan) -> list[str]:
    """The chain's rules, written as ``iptables -S`` prints them (so a converged chain compares equal)."""
    a = f"-A {CHAIN}"
    rules = [
        f"{a} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"{a} -m physdev --physdev-is-bridged -j RETURN",
        f"{a} -i {_NONE} -j {_REJECT}",
    ]
    for resolver in plan.resolvers:
        rules += [f"{a} -d {resolver}/32 -p {p} -m {p} --dport 53 -j RETURN" for p in ("udp", "tcp")]
    rules += [
        f"{a} -i {_WEB} ! -p tcp -j {_REJECT}",
        f"{a} -i {_WEB} -p tcp -m multiport ! --dports 80,443 -j {_REJECT}",
    ]
    rules += [f"{a} -d {net} -j {_REJECT}" for net in plan.protected]
    rules += [f"{a} -d {net} -j RETURN" for net in plan.allow]
    rules += [f"{a} -d {cidr} -j {_REJECT}" for cidr, _ in FORBIDDEN]
    rules += [f"{a} -d {net} -j {_REJECT}" for net in plan.lan]
    return rules


def _hook(current: list[str], want: str) -> list[str]:
    """Restore lines that make ``want`` the chain's first rule and remove every other rule on agenthost's
    bridges (an earlier version's, a duplicate): all of them are ours by the ``ah`` interface prefix."""
    rules = [r for r in current if r.startswith("-A ")]
    ours = [r for r in rules if _on_our_bridges(r)]
    if ours == [want] and rules[0] == want:
        return []
    chain, _, spec = want.removeprefix("-A ").partition(" ")
    return ["-D" + r[2:] for r in ours] + [f"-I {chain} 1 {spec}"]


def _on_our_bridges(rule: str) -> bool:
    words = rule.split()
    return any(w == "-i" and i + 1 < len(words) and words[i + 1].startswith("ah") for i, w in enumerate(words))


def restore_script(plan: EgressPlan, current: HostChains) -> str | None:
    """The ``iptables-restore --noflush`` input that converges the host, or None when it already is."""
    want = chain_rules(plan)
    lines: list[str] = []
    if current.chain is None or [r for r in current.chain if r.startswith("-A ")] != want:
        lines += [f":{CHAIN} - [0:0]", *want]  # with --noflush, declaring the chain creates or empties it
    lines += _hook(current.docker_user, _JUMP)
    lines += _hook(current.input, _INPUT)
    if not lines:
        return None
    return "\n".join(["*filter", *lines, "COMMIT", ""])


def describe_rules(plan: EgressPlan) -> str:
    """The rules for ``plan`` as ``iptables-restore --noflush`` input for a host that has none yet,
    with what each refused range is."""
    lines = ["# agenthost's egress rules (iptables-restore --noflush); refused ranges:"]
    lines += [f"#   {cidr:<18} {why}" for cidr, why in FORBIDDEN]
    lines += [f"#   {net!s:<18} the host's own subnet (its LAN)" for net in plan.lan]
    lines += [f"#   {net!s:<18} the tenant network pool (no allowlist opens it)" for net in plan.protected]
    lines += [f"# allowed by the operator: {', '.join(map(str, plan.allow)) or 'nothing'}"]
    lines += [f"# DNS allowed to dockerd's resolvers: {', '.join(map(str, plan.resolvers)) or 'none'}"]
    return "\n".join(lines) + "\n" + (restore_script(plan, HostChains([], [], None)) or "")


def egress_filter_available() -> bool:
    """The host can filter: iptables and iptables-restore are installed."""
    return shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None


def resolvers(
    etc: Path = Path("/etc/resolv.conf"), resolved: Path = Path("/run/systemd/resolve/resolv.conf")
) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 name servers dockerd gives its embedded resolver: those of /etc/resolv.conf, or of
    systemd-resolved's upstream file when the former holds only its local stub. Loopback ones are left
    out (a container cannot reach the host's loopback; dockerd drops them too)."""

    def read(path: Path) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return []
        found = []
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    found.append(ipaddress.ip_address(words[1].split("%")[0]))
                except ValueError:
                    continue
        return found

    servers = read(etc)
    if servers and all(s.is_loopback for s in servers):
        servers = read(resolved) or servers
    return tuple(s for s in servers if isinstance(s, ipaddress.IPv4Address) and not s.is_loopback)


def _host_subnets() -> tuple[Net, ...]:
    """The subnets of the host's own IPv4 addresses (its LAN, whatever its addresses), except on
    agenthost's bridges and those a forbidden range covers already."""
    try:
        out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, check=True, text=True).stdout
        links = json.loads(out)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        log.warning("cannot list the host's addresses (%s): its own subnets stay reachable unless forbidden", exc)
        return ()
    forbidden = [ipaddress.IPv4Network(cidr) for cidr, _ in FORBIDDEN]
    found: list[Net] = []
    for link in links:
        if str(link.get("ifname", "")).startswith("ah") or link.get("ifname") == "lo":
            continue
        for info in link.get("addr_info") or []:
            net = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}").network
            if net.prefixlen < 32 and not any(net.subnet_of(f) for f in forbidden) and net not in found:
                found.append(net)
    return tuple(found)


def host_plan(allow: Sequence[str], protected: Sequence[str]) -> EgressPlan:
    """The plan for this host: the given CIDRs (validated settings) and the host's resolvers and subnets."""
    return EgressPlan(
        allow=tuple(ipaddress.IPv4Network(c) for c in allow),
        protected=tuple(ipaddress.IPv4Network(c) for c in protected),
        resolvers=resolvers(),
        lan=_host_subnets(),
    )


def _listing(chain: str) -> list[str] | None:
    proc = subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True)
    return proc.stdout.splitlines() if proc.returncode == 0 else None


@contextmanager
def _host_lock() -> Iterator[None]:
    """Several agenthost processes may converge at once: one at a time reads and rewrites."""
    try:
        fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield  # not root: iptables will say so
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def apply_egress_rules(plan: EgressPlan) -> bool:
    """Converge the host's rules to ``plan``. Returns whether anything changed.

    Raises: AgentHostError when dockerd made no DOCKER-USER chain or iptables refuses.
    """
    with _host_lock():
        docker_user, inp = _listing("DOCKER-USER"), _listing("INPUT")
        if docker_user is None or inp is None:
            raise AgentHostError(
                "cannot install the egress rules: the DOCKER-USER chain is missing",
                "an operator must run dockerd with its iptables rules on (the default) and as root",
            )
        script = restore_script(plan, HostChains(docker_user, inp, _listing(CHAIN)))
        if script is None:
            return False
        proc = subprocess.run(["iptables-restore", "-w", "--noflush"], input=script, text=True, capture_output=True)
        if proc.returncode != 0:
            raise AgentHostError(f"cannot install the egress rules: iptables-restore said {proc.stderr.strip()!r}")
        return True
