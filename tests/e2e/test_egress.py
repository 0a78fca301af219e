"""Egress policy enforced per service: open, web (80/443 only) or none.

The outside world is a test host of our own: a network namespace reached over a veth pair,
serving HTTP on ports 80 and 8080. Nothing leaves this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from .harness import AgentHost, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NS, HOST_IF, NS_IF = "ah-test-inet", "ah-tveth0", "ah-tveth1"
HOST_IP, NS_IP = "10.231.0.1", "10.231.0.2"


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def outside_host() -> Iterator[str]:
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed (apt-get install iproute2)")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    _sh("ip", "netns", "add", NS)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        _sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _sh("ip", "link", "set", NS_IF, "netns", NS)
        _sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
        _sh("ip", "link", "set", HOST_IF, "up")
        _sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF)
        _sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
        _sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        servers += [
            subprocess.Popen(
                ["ip", "netns", "exec", NS, "python3", "-m", "http.server", port, "--bind", NS_IP],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/tmp",
            )
            for port in ("80", "8080")
        ]
        deadline = time.monotonic() + 20
        while subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://{NS_IP}:8080/"]).returncode != 0:
            assert time.monotonic() < deadline, "test host did not come up"
            time.sleep(0.2)
        yield NS_IP
    finally:
        for server in servers:
            server.terminate()
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


PROBE = (
    "import socket,sys\n"
    "for port in (80, 8080):\n"
    "    s = socket.socket(); s.settimeout(3)\n"
    "    try:\n"
    "        s.connect((sys.argv[1], port)); print(port, 'open')\n"
    "    except OSError as e:\n"
    "        print(port, 'blocked')\n"
)


async def test_egress_policies(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient, outside_host: str
) -> None:
    key = agenthost.tenant("egress")
    expected = {
        "open": {"80 open", "8080 open"},
        "web": {"80 open", "8080 blocked"},
        "none": {"80 blocked", "8080 blocked"},
    }
    async with connect(agenthost, key, "stdio") as client:
        for policy, want in expected.items():
            svc = await call(
                client, "deploy_service", {"name": f"eg-{policy}", "image": hello_image, "port": 8000, "egress": policy}
            )
            assert svc["status"] == "running" and svc["egress"] == policy
            container = docker_client.containers.get(f"ah-{svc['id']}")
            result = container.exec_run(["python3", "-c", PROBE, outside_host])
            assert set(result.output.decode().split("\n")) - {""} == want, (policy, result.output)
            await call(client, "delete_service", {"service": f"eg-{policy}", "confirm": True})
