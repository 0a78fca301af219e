"""One tenant floods the engine with slow calls; how fast do another tenant's reads still answer?

Tenant `greedy` runs a service that ignores SIGTERM, so every `stop_service` holds an engine call
(docker stop) for its full 10 s grace period, and fires FLOOD of them at once over MCP. Meanwhile
tenant `bench` calls get_service on its own service again and again; its latency is compared with
the same calls on an idle platform. Usage: .venv/bin/python bench/fairness.py [FLOOD]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import anyio
import docker
from mcp import Client
from serving import mcp_client, serve

from common import BIN, Platform, build_hello, report, tool

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(10**6)"


async def _samples(mcp: Client, seconds: float) -> list[float]:
    out: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        svc = await tool(mcp, "get_service", {"service": "app"})
        out.append(time.monotonic() - started)
        assert svc["status"] == "running", svc
        await anyio.sleep(0.1)
    return out


async def main(flood: int) -> None:
    docker_client = docker.from_env(version="auto")
    image = build_hello(docker_client)
    platform = Platform(AGENTHOST_SANDBOX_POOL_SIZE="0")
    created = subprocess.run(
        [str(BIN), "tenant", "create", "greedy"], env=platform.env, check=True, capture_output=True, text=True
    ).stdout
    greedy_key = re.search(r"ah_[0-9a-f]{16}\.\S+", created).group(0)  # type: ignore[union-attr]
    greedy_tenant = re.search(r"\((t_[0-9a-f]+)\)", created).group(1)  # type: ignore[union-attr]
    outcomes: dict[str, int] = {}
    try:
        async with (
            serve(platform) as server,
            mcp_client(server, platform.key) as b,
            mcp_client(server, greedy_key) as a,
        ):
            await tool(b, "deploy_service", {"name": "app", "image": image, "port": 8000})
            command = ["python3", "-c", STUBBORN]
            await tool(a, "deploy_service", {"name": "stubborn", "image": image, "command": command})
            idle = await _samples(b, 3)

            async def stop() -> None:
                result = await a.call_tool("stop_service", {"service": "stubborn"})
                text = " ".join(getattr(c, "text", "") for c in result.content)
                code = re.search(r"\[([a-z_]+)\]", text) if result.is_error else None
                key = code.group(1) if code else "ok"
                outcomes[key] = outcomes.get(key, 0) + 1

            async with anyio.create_task_group() as tg:
                for _ in range(flood):
                    tg.start_soon(stop)
                await anyio.sleep(1)  # the flood reaches the engine
                flooded = await _samples(b, 7)
    finally:
        platform.cleanup(docker_client)
        greedy = {"label": f"agenthost.tenant={greedy_tenant}"}
        for c in docker_client.containers.list(all=True, filters=greedy):
            c.remove(force=True)
        for n in docker_client.networks.list(filters=greedy):
            n.remove()
        shutil.rmtree(platform.dir, ignore_errors=True)
    print(f"greedy tenant: {flood} concurrent stop_service calls (10 s each in the engine): {outcomes}")
    report("another tenant's get_service, during the flood vs idle", flooded, idle, "idle")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 50)
