"""deploy_service (wait=true, over MCP stdio) against the raw Docker SDK doing the same run plus the same wait.

Both sides: the same image, runsc, read-only root with tmpfs, no capabilities, no-new-privileges, memory/CPU/pids
limits, a port published on 127.0.0.1, then an HTTP GET until the service answers. Runs alternate, one after the
other, so both see the same machine. The tenant keeps one service running throughout, so its private network
exists (the raw side uses the engine's default bridge): a tenant's very first deploy also makes the network,
which bench/deploy_profile.py shows apart. Usage: .venv/bin/python bench/deploy.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import anyio
import docker

from common import HARDENED, Platform, build_hello, report, tool, wait_http


def raw_deploy(client: docker.DockerClient, image: str, i: int) -> float:
    started = time.monotonic()
    container = client.containers.run(
        image,
        name=f"ah-bench-raw-{i}",
        detach=True,
        ports={"8000/tcp": ("127.0.0.1", None)},
        **HARDENED,
    )
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
    finally:
        platform.cleanup(client)
    report("deploy until the port answers", ours, raw, "docker SDK")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 9)
