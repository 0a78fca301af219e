"""exec over MCP (streamable HTTP) against the Docker SDK's exec_run on the same container.

One service (the bench hello app, runsc) is deployed through agenthost; then the same short command runs
alternately through the `exec` tool of a running `agenthost serve` and through docker-py's exec_run on that
very container, so both see the same machine. Usage: .venv/bin/python bench/exec.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import anyio
import docker
from serving import http_client

from common import Platform, build_hello, report, tool

COMMAND = ["echo", "hello"]


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    image = build_hello(client)
    platform = Platform(AGENTHOST_SANDBOX_POOL_SIZE="0")
    ours: list[float] = []
    raw: list[float] = []
    try:
        async with http_client(platform) as mcp:
            svc = await tool(mcp, "deploy_service", {"name": "target", "image": image, "port": 8000})
            assert svc["status"] == "running", svc
            container = client.containers.get(f"ah-{svc['id']}")
            for _ in range(3):  # warm-up, untimed
                await tool(mcp, "exec", {"service": "target", "command": COMMAND})
                container.exec_run(COMMAND)
            for _ in range(rounds):
                started = time.monotonic()
                r = await tool(mcp, "exec", {"service": "target", "command": COMMAND})
                ours.append(time.monotonic() - started)
                assert r["exit_code"] == 0 and "hello" in r["stdout"], r
                started = time.monotonic()
                out = await anyio.to_thread.run_sync(lambda: container.exec_run(COMMAND))
                raw.append(time.monotonic() - started)
                assert out.exit_code == 0 and out.output == b"hello\n"
            await tool(mcp, "delete_service", {"service": "target", "confirm": True})
    finally:
        platform.cleanup(client)
    report(f"exec {' '.join(COMMAND)!r} in a runsc service", ours, raw, "exec_run")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
