"""The egress rule set: its order, its convergence, the operator's allowlist and the host facts it reads."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pydantic
import pytest

from mcp_server.cli import main
from orchestrator.backends.docker import net as docker_net
from orchestrator.backends.docker.egress import (
    CHAIN,
    FORBIDDEN,
    EgressPlan,
    HostChains,
    chain_rules,
    resolvers,
    restore_script,
)
from orchestrator.backends.docker.net import EgressFilter, attached_policy
from orchestrator.errors import NotSupported
from orchestrator.settings import Settings, parse_cidrs
from orchestrator.status import egress_notes

REJECT = "-j REJECT --reject-with icmp-admin-prohibited"
JUMP = f"-A DOCKER-USER -i ah+ -j {CHAIN}"
INPUT = f"-A INPUT -i ah+ -m conntrack --ctstate NEW {REJECT}"
PLAN = EgressPlan(
    allow=(ipaddress.IPv4Network("192.168.77.0/24"),),
    protected=(ipaddress.IPv4Network("10.213.0.0/16"),),
    resolvers=(ipaddress.IPv4Address("10.255.255.53"),),
    lan=(ipaddress.IPv4Network("192.0.2.0/24"),),
)


def position(rules: list[str], fragment: str) -> int:
    found = [i for i, rule in enumerate(rules) if fragment in rule]
    assert len(found) == 1, (fragment, rules)
    return found[0]


def test_rules_refuse_policy_first_then_lift_only_the_forbidden_ranges() -> None:
    rules = chain_rules(PLAN)
    assert all(r.startswith(f"-A {CHAIN} ") for r in rules)
    assert position(rules, "--ctstate RELATED,ESTABLISHED -j RETURN") == 0  # replies always return
    bridged = position(rules, "--physdev-is-bridged -j RETURN")  # within one bridge: Docker's icc decides
    none = position(rules, f"-i ah-eg-none {REJECT}")
    dns = position(rules, "-d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN")
    web = position(rules, f"-i ah-eg-web -p tcp -m multiport ! --dports 80,443 {REJECT}")
    pool = position(rules, f"-d 10.213.0.0/16 {REJECT}")
    allow = position(rules, "-d 192.168.77.0/24 -j RETURN")
    forbidden = [position(rules, f"-d {cidr} {REJECT}") for cidr, _ in FORBIDDEN]
    lan = position(rules, f"-d 192.0.2.0/24 {REJECT}")
    # 'none' gets no DNS; the allowlist lifts neither 'none' nor 'web' nor the tenant pool.
    assert bridged < none < dns < web < pool < allow < min(forbidden) and max(forbidden) < lan
    assert position(rules, f"-i ah-eg-web ! -p tcp {REJECT}") < allow
    assert position(rules, "-d 10.255.255.53/32 -p tcp -m tcp --dport 53 -j RETURN") < web


def test_the_required_ranges_are_forbidden() -> None:
    ranges = {ipaddress.IPv4Network(cidr) for cidr, _ in FORBIDDEN}
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ):
        assert ipaddress.IPv4Network(cidr) in ranges
    assert not any(ipaddress.IPv4Address("203.0.113.7") in net for net in ranges)  # the tests' internet


def converged() -> HostChains:
    return HostChains(
        docker_user=["-N DOCKER-USER", JUMP, "-A DOCKER-USER -j RETURN"],
        input=["-P INPUT ACCEPT", INPUT, "-A INPUT -i eth0 -j ACCEPT"],
        chain=[f"-N {CHAIN}", *chain_rules(PLAN)],
    )


def test_a_converged_host_is_left_alone() -> None:
    assert restore_script(PLAN, converged()) is None


def test_a_fresh_host_gets_the_chain_and_both_hooks_in_one_transaction() -> None:
    script = restore_script(PLAN, HostChains(["-N DOCKER-USER", "-A DOCKER-USER -j RETURN"], ["-P INPUT ACCEPT"], None))
    assert script is not None
    lines = script.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT" and lines.count("COMMIT") == 1
    assert lines[1] == f":{CHAIN} - [0:0]" and lines[2 : 2 + len(chain_rules(PLAN))] == chain_rules(PLAN)
    assert f"-I DOCKER-USER 1 -i ah+ -j {CHAIN}" in lines
    assert f"-I INPUT 1 -i ah+ -m conntrack --ctstate NEW {REJECT}" in lines
    assert not [line for line in lines if line.startswith("-D")]


def test_a_changed_allowlist_rebuilds_the_chain_only() -> None:
    wider = EgressPlan(PLAN.allow + (ipaddress.IPv4Network("10.20.0.0/16"),), PLAN.protected, PLAN.resolvers, PLAN.lan)
    script = restore_script(wider, converged())
    assert script is not None
    lines = script.splitlines()
    assert lines[1] == f":{CHAIN} - [0:0]"  # declared again: emptied, then refilled
    assert lines[2:-1] == chain_rules(wider)  # the hooks are in place already


def test_earlier_rules_and_a_displaced_hook_are_replaced() -> None:
    legacy = [
        "-A DOCKER-USER -i ah-eg-web -p tcp -m multiport --dports 80,443 -j RETURN",
        "-A DOCKER-USER -i ah-eg-web -j DROP",
    ]
    state = converged()
    state = HostChains(
        docker_user=["-N DOCKER-USER", *legacy, JUMP, JUMP, "-A DOCKER-USER -j RETURN"],
        input=["-P INPUT ACCEPT", "-A INPUT -i ah+ -m conntrack --ctstate NEW -j DROP", INPUT],
        chain=state.chain,
    )
    script = restore_script(PLAN, state)
    assert script is not None
    lines = script.splitlines()
    assert "-D DOCKER-USER -i ah-eg-web -p tcp -m multiport --dports 80,443 -j RETURN" in lines
    assert "-D DOCKER-USER -i ah-eg-web -j DROP" in lines
    assert lines.count(f"-D DOCKER-USER -i ah+ -j {CHAIN}") == 2  # both copies go, one comes back first
    assert lines.count(f"-I DOCKER-USER 1 -i ah+ -j {CHAIN}") == 1
    assert "-D INPUT -i ah+ -m conntrack --ctstate NEW -j DROP" in lines
    assert "-A DOCKER-USER -j RETURN" not in script and "-D DOCKER-USER -j RETURN" not in script  # Docker's own
    assert f":{CHAIN} - [0:0]" not in lines  # the chain itself was right


def test_resolvers_are_what_dockerd_forwards_to(tmp_path: Path) -> None:
    etc, resolved = tmp_path / "resolv.conf", tmp_path / "resolved.conf"
    etc.write_text("# comment\nnameserver 10.255.255.53\nnameserver 127.0.0.1\nnameserver fd00::1\nsearch x\n")
    assert resolvers(etc, resolved) == (ipaddress.IPv4Address("10.255.255.53"),)
    etc.write_text("nameserver 127.0.0.53\noptions edns0\n")  # systemd-resolved's stub: dockerd reads its upstreams
    resolved.write_text("nameserver 192.168.1.1\nnameserver 8.8.8.8\n")
    assert resolvers(etc, resolved) == (ipaddress.IPv4Address("192.168.1.1"), ipaddress.IPv4Address("8.8.8.8"))
    assert resolvers(tmp_path / "missing", resolved) == ()


@pytest.mark.parametrize(
    "value,want",
    [
        ("", []),
        ("10.0.0.5", ["10.0.0.5/32"]),
        ("10.1.0.0/16, 192.168.5.7", ["10.1.0.0/16", "192.168.5.7/32"]),
        ('["100.64.1.0/24"]', ["100.64.1.0/24"]),
        (["172.16.9.0/24"], ["172.16.9.0/24"]),
    ],
)
def test_allowlist_forms(value: object, want: list[str]) -> None:
    assert parse_cidrs(value) == want


@pytest.mark.parametrize(
    "value,says",
    [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
        ("fd00::/8", "IPv6"),
        ("metadata", "'metadata' is not a valid CIDR"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a valid CIDR"),
        ('["10.0.0.0/8"', "not a JSON list"),
        ("[5]", "5 is not a CIDR string"),
    ],
)
def test_a_bad_allowlist_is_a_clear_settings_error(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_cidrs(value)
    with pytest.raises(pydantic.ValidationError, match=re.escape(says)):
        Settings(egress_allow=value)


def test_the_cli_names_the_bad_setting(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AGENTHOST_EGRESS_ALLOW", "10.0.0.1/8")
    assert main(["egress", "show"]) == 2
    err = capsys.readouterr().err
    assert "error: AGENTHOST_EGRESS_ALLOW: '10.0.0.1/8' is not a valid CIDR" in err, err
    assert "did you mean 10.0.0.0/8?" in err and "hint:" in err


@pytest.mark.parametrize(
    "attrs,want",
    [
        ({"HostConfig": {"NetworkMode": "none"}}, None),
        ({"HostConfig": {"NetworkMode": "ah-eg-web"}, "NetworkSettings": {"Networks": {"ah-eg-web": {}}}}, "web"),
        ({"HostConfig": {"NetworkMode": "ah-eg-none"}, "NetworkSettings": {"Networks": {"ah-net-t": {}}}}, "none"),
        ({"HostConfig": {"NetworkMode": "ah-eg-open"}}, "open"),
        ({"HostConfig": {"NetworkMode": "bridge"}}, "open"),
    ],
)
def test_a_restarted_container_is_guarded_by_the_policy_of_its_bridge(attrs: dict, want: str | None) -> None:
    assert attached_policy(attrs) == want


def test_without_iptables_only_an_accepted_unfiltered_open_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_net, "egress_filter_available", lambda: False)
    strict = EgressFilter()
    for policy in ("open", "web", "none"):
        with pytest.raises(NotSupported, match=f"egress '{policy}' cannot be enforced on this host") as err:
            strict.ensure(policy)  # type: ignore[arg-type]
        assert "AGENTHOST_ALLOW_UNFILTERED_EGRESS=true" in err.value.hint
    with pytest.raises(NotSupported, match="iptables is missing"):
        strict.apply()
    lenient = EgressFilter(allow_unfiltered=True)
    lenient.ensure("open")
    with pytest.raises(NotSupported) as err:
        lenient.ensure("web")
    assert err.value.hint == "use egress='open' (the operator accepted unfiltered egress)"


@pytest.mark.parametrize(
    "details,says",
    [
        ({"egress_enforced": "true", "egress_allow": ""}, "egress reaches the internet only: never this host"),
        ({"egress_enforced": "true", "egress_allow": "10.20.0.0/16"}, "the operator also allows 10.20.0.0/16"),
        ({"egress_enforced": "false", "egress_unfiltered_accepted": "true"}, "egress 'open' reaches this host"),
        ({"egress_enforced": "false", "egress_unfiltered_accepted": "false"}, "workloads with a network"),
    ],
)
def test_platform_status_says_what_egress_means(details: dict[str, str], says: str) -> None:
    notes = egress_notes(details)
    assert len(notes) == 1 and says in notes[0], notes
