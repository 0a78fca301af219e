"""exec over MCP (streamable HTTP) against the Docker SDK's exec_run on the same container.

One service (the bench hello app, runsc) is deployed through agenthost; then the same short command runs
alternately through the `exec` tool of a running `agenthost serve` and through docker-py's exec_run on that
very container, so both see the same machine. Two commands, in turn: `echo hello`, which the tool runs as
the shell's builtin in its exec wrapper (exec_run starts /bin/echo), and `/bin/echo hello`, a program, which
the tool starts directly as exec_run does. Usage: .venv/bin/python bench/exec.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import anyio
import docker
from serving import http_client

from common import Platform, build_hello, report, tool

COMMANDS = (["echo", "hello"], ["/bin/echo", "hello"])


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    image = build_hello(client)
    platform = Platform(AGENTHOST_SANDBOX_POOL_SIZE="0")
    ours: list[list[float]] = [[] for _ in COMMANDS]
    raw: list[list[float]] = [[] for _ in COMMANDS]
    try:
        async with http_client(platform) as mcp:
            svc = await tool(mcp, "deploy_service", {"name": "target", "image": image, "port": 8000})
            assert svc["status"] == "running", svc
            container = client.containers.get(f"ah-{svc['id']}")
            for command in COMMANDS * 3:  # warm-up, untimed
                await tool(mcp, "exec", {"service": "target", "command": command})
                container.exec_run(command)
            for _ in range(rounds):
                for i, command in enumerate(COMMANDS):
                    started = time.monotonic()
                    r = await tool(mcp, "exec", {"service": "target", "command": command})
                    ours[i].append(time.monotonic() - started)
                    assert r["exit_code"] == 0 and "hello" in r["stdout"], r
                    started = time.monotonic()
                    out = await anyio.to_thread.run_sync(lambda c=command: container.exec_run(c))
                    raw[i].append(time.monotonic() - started)
                    assert out.exit_code == 0 and out.output == b"hello\n"
            await tool(mcp, "delete_service", {"service": "target", "confirm": True})
    finally:
        platform.cleanup(client)
    for command, mine, theirs in zip(COMMANDS, ours, raw, strict=True):
        report(f"exec {' '.join(command)!r} in a runsc service", mine, theirs, "exec_run")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
