"""Egress reaches the internet, never the host, link-local (cloud metadata), private ranges or CGNAT.

Each attack runs as a tenant would, through the MCP client: a service (egress open, web), a sandbox
with network egress and a build RUN step try every address of the test host (conftest.py) and the
host's own ports through their default gateway. The test host's TEST-NET-3 address stands in for the
internet: that one must answer, so a refusal elsewhere is the rules' doing, not a broken network.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from orchestrator.backends.docker.egress import CHAIN, chain_rules, host_plan

from .harness import (
    EGRESS_PROBE,
    TEST_IMAGES_ENV,
    VENV_BIN,
    AgentHost,
    TestHost,
    call,
    connect,
    make_repo,
    probe_results,
    untrusted_body,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def host_listener(docker_client: docker.DockerClient) -> Iterator[int]:
    """A port on every host address, standing in for a host daemon listening on 0.0.0.0. Proved
    reachable from Docker's default bridge first, so an agenthost workload's refusal is the rules'."""
    listener = socket.create_server(("0.0.0.0", 0))
    port = int(listener.getsockname()[1])
    try:
        control = docker_client.containers.run(
            "agenthost/python:bookworm",
            ["python3", "-c", EGRESS_PROBE, f"listener=gateway:{port}"],
            network="bridge",
            remove=True,
        )
        assert probe_results(control.decode()).get("listener", "").startswith("reached"), control
        yield port
    finally:
        listener.close()


def targets(test_host: TestHost, agenthost: AgentHost, listener: int) -> tuple[list[str], set[str]]:
    """The probe's arguments, and the labels that must be blocked (all but 'internet')."""
    cp_port = urlsplit(agenthost.url).port
    args = [f"internet={test_host.internet}:80"]
    args += [f"{label}={address}:80" for label, address in test_host.forbidden.items()]
    args += [f"control-plane=gateway:{cp_port}", "registry=gateway:5000", f"host-listener=gateway:{listener}"]
    return args, {a.split("=")[0] for a in args} - {"internet"}


def assert_contained(results: dict[str, str], blocked: set[str], output: str) -> None:
    assert blocked | {"internet"} <= set(results), output  # every target was probed
    assert results["internet"].startswith("reached"), f"egress must still reach the internet: {output}"
    reached = {label: r for label, r in results.items() if label in blocked and not r.startswith("blocked")}
    assert not reached, f"a workload reached what it must not: {reached}"


@pytest.mark.parametrize("egress", ["open", "web"])
async def test_attack_service_reaches_metadata_lan_and_host(
    agenthost: AgentHost, hello_image: str, test_host: TestHost, host_listener: int, egress: str
) -> None:
    args, blocked = targets(test_host, agenthost, host_listener)
    key = agenthost.tenant(f"eg-attack-{egress}")
    async with connect(agenthost, key, "stdio") as client:
        svc = await call(
            client, "deploy_service", {"name": "prober", "image": hello_image, "port": 8000, "egress": egress}
        )
        assert svc["status"] == "running" and svc["egress"] == egress, svc
        run = await call(
            client, "exec", {"service": "prober", "command": ["python3", "-c", EGRESS_PROBE, *args], "timeout_s": 120}
        )
        out = untrusted_body(run["stdout"])
        assert_contained(probe_results(out), blocked, out)
        await call(client, "delete_service", {"service": "prober", "confirm": True})
        notes = (await call(client, "platform_status"))["notes"]
        assert any(n.startswith("egress reaches the internet only: never this host") for n in notes), notes


async def test_attack_egress_sandbox_reaches_metadata_lan_and_host(
    agenthost: AgentHost, test_host: TestHost, host_listener: int
) -> None:
    args, blocked = targets(test_host, agenthost, host_listener)
    key = agenthost.tenant("eg-attack-sandbox")
    async with connect(agenthost, key, "stdio") as client:
        sbx = await call(client, "create_sandbox", {"name": "prober", "network": "egress"})
        assert sbx["network"] == "egress", sbx
        run = await call(
            client, "exec", {"sandbox": "prober", "command": ["python3", "-c", EGRESS_PROBE, *args], "timeout_s": 120}
        )
        out = untrusted_body(run["stdout"])
        assert_contained(probe_results(out), blocked, out)
        await call(client, "delete_sandbox", {"sandbox": "prober", "confirm": True})


async def test_attack_build_step_reaches_metadata_lan_and_host(
    agenthost: AgentHost, test_host: TestHost, host_listener: int, repo_dir: Path
) -> None:
    args, blocked = targets(test_host, agenthost, host_listener)
    # The marker keeps the engine from answering the RUN step from its cache (no probe would run).
    repo = make_repo(
        repo_dir / "prober",
        {
            "probe.py": f"# {uuid.uuid4().hex}\n{EGRESS_PROBE}",
            "Dockerfile": "FROM agenthost/python:bookworm\nCOPY probe.py /probe.py\n"
            f"RUN python3 /probe.py {' '.join(args)} || true\n",
        },
    )
    key = agenthost.tenant("eg-attack-build")
    async with connect(agenthost, key, "stdio") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        out = (await call(client, "build_logs", {"build_id": build["id"], "tail": 5000}))["output"]
        assert_contained(probe_results(out), blocked, out)


@pytest.fixture
def default_rules_after(agenthost: AgentHost) -> Iterator[None]:
    """The rules are host-wide: put the default ones (no allowlist) back for the tests that follow."""
    yield
    subprocess.run(
        [str(VENV_BIN / "agenthost"), "egress", "apply"],
        env=agenthost.process_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.alone
async def test_attack_allowlist_opens_only_what_it_lists(
    docker_client: docker.DockerClient,
    hello_image: str,
    test_host: TestHost,
    tmp_path_factory: pytest.TempPathFactory,
    default_rules_after: None,
) -> None:
    allowed = test_host.forbidden["rfc1918-192"]
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-allowlist")),
        env={"AGENTHOST_EGRESS_ALLOW": f"{allowed}/32", **TEST_IMAGES_ENV},
    )
    host.init()
    try:
        async with connect(host, host.tenant("eg-allow"), "stdio") as client:
            svc = await call(client, "deploy_service", {"name": "prober", "image": hello_image, "port": 8000})
            assert svc["status"] == "running", svc
            args = [f"internet={test_host.internet}:80"]
            args += [f"{label}={address}:80" for label, address in test_host.forbidden.items()]
            run = await call(
                client,
                "exec",
                {"service": "prober", "command": ["python3", "-c", EGRESS_PROBE, *args], "timeout_s": 120},
            )
            out = untrusted_body(run["stdout"])
            results = probe_results(out)
            assert results["rfc1918-192"] == f"reached agenthost-test-host {allowed}:80", out
            assert_contained(results, set(test_host.forbidden) - {"rfc1918-192"}, out)
            notes = (await call(client, "platform_status"))["notes"]
            assert any(n.endswith(f"the operator also allows {allowed}/32") for n in notes), notes
            await call(client, "delete_service", {"service": "prober", "confirm": True})
    finally:
        host.stop()
        host.cleanup_engine()


@pytest.mark.alone
def test_apply_installs_exactly_the_planned_rules(agenthost: AgentHost) -> None:
    """`agenthost egress apply` leaves the chain as iptables prints the planned rules (so the next start
    finds it converged instead of rebuilding it), hooked from DOCKER-USER and INPUT."""
    agenthost.cli("egress", "apply")
    settings = agenthost.settings
    plan = host_plan(settings.egress_allow, [settings.tenant_network_pool])

    def listing(chain: str) -> list[str]:
        return subprocess.run(["iptables", "-S", chain], check=True, capture_output=True, text=True).stdout.splitlines()

    assert listing(CHAIN)[1:] == chain_rules(plan)
    assert f"-A DOCKER-USER -i ah+ -j {CHAIN}" in listing("DOCKER-USER")
    refuse = "-j REJECT --reject-with icmp-admin-prohibited"
    assert f"-A INPUT -i ah+ -m conntrack --ctstate NEW {refuse}" in listing("INPUT")
    shown = agenthost.cli("egress", "show")
    assert "\n".join(chain_rules(plan)) in shown and "# DNS allowed to dockerd's resolvers:" in shown
