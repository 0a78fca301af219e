"""deploy_service (wait=true, over MCP stdio) against the raw Docker SDK doing the same run plus the same wait.

Both sides: the same image, runsc, read-only root with tmpfs, no capabilities, no-new-privileges, memory/CPU/pids
limits, a port published on 127.0.0.1, then an HTTP GET until the service answers. Runs alternate, one after the
other, so both see the same machine. The tenant keeps one service running throughout, so its private network
exists (the raw side uses the engine's default bridge): a tenant's very first deploy also makes the network,
which bench/deploy_profile.py shows apart. A third column runs the raw container on the networks agenthost's
container joins (the egress bridge of its policy, and an internal network as the tenant's private one): the
engine's start is slower on user-defined networks, a cost of the isolation rather than of agenthost.
Usage: .venv/bin/python bench/deploy.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import anyio
import docker
from docker.models.networks import Network

from common import HARDENED, Platform, build_hello, report, tool, wait_http

EGRESS_BRIDGE = "ah-eg-open"  # made by agenthost for services with egress 'open' (the default)


def raw_deploy(client: docker.DockerClient, image: str, i: int, private: Network | None = None) -> float:
    started = time.monotonic()
    ports = {"8000/tcp": ("127.0.0.1", None)}
    if private is None:
        container = client.containers.run(image, name=f"ah-bench-raw-{i}", detach=True, ports=ports, **HARDENED)
    else:
        container = client.containers.create(
            image, name=f"ah-bench-raw-{i}", network=EGRESS_BRIDGE, ports=ports, **HARDENED
        )
        private.connect(container, aliases=[f"raw-{i}"])
        container.start()
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
    wait_http(f"http://127.0.0.1:{port}/")
    elapsed = time.monotonic() - started
    container.remove(force=True)
    return elapsed


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    image = build_hello(client)
    platform = Platform()
    ours: list[float] = []
    raw: list[float] = []
    raw_nets: list[float] = []
    private = client.networks.create("ah-bench-private", internal=True)
    try:
        async with platform.client() as mcp:
            # One warm-up of each, untimed; the anchor (and with it the tenant's network) stays.
            await tool(mcp, "deploy_service", {"name": "anchor", "image": image, "port": 8000})
            raw_deploy(client, image, -1)
            for i in range(rounds):
                started = time.monotonic()
                svc = await tool(mcp, "deploy_service", {"name": f"b{i}", "image": image, "port": 8000})
                ours.append(time.monotonic() - started)
                assert svc["status"] == "running", svc
                await tool(mcp, "delete_service", {"service": f"b{i}", "confirm": True})
                raw.append(raw_deploy(client, image, i))
                raw_nets.append(raw_deploy(client, image, i, private))
    finally:
        platform.cleanup(client)
        private.remove()
    report("deploy until the port answers", ours, raw, "docker SDK")
    report("the same, the raw container on the same two networks", ours, raw_nets, "SDK+nets")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 9)
