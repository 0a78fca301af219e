"""Egress policy enforced per service: open, web (80/443 only) or none.

The internet is the test host's TEST-NET-3 address (conftest.py): a network namespace of our own
reached over a veth pair, serving HTTP on ports 80 and 8080. Nothing leaves this machine.
"""

from __future__ import annotations

import docker
import pytest

from .harness import AgentHost, TestHost, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

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
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient, test_host: TestHost
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
            result = container.exec_run(["python3", "-c", PROBE, test_host.internet])
            assert set(result.output.decode().split("\n")) - {""} == want, (policy, result.output)
            await call(client, "delete_service", {"service": f"eg-{policy}", "confirm": True})
