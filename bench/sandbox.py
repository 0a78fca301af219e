"""create_sandbox + first exec from a warm pool, against a cold `docker run` of the same image doing the same.

agenthost side (MCP over stdio): create_sandbox (served from the warm pool) and the first exec in it; the
sandbox is deleted untimed and the pool refilled before the next round. Raw side: the Docker SDK runs the
same image with runsc, the same limits and no network, and execs the same command in it (container
start plus first exec: what an agent waits for without a pool). Usage: .venv/bin/python bench/sandbox.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import anyio
import docker

from common import Platform, report, tool
from orchestrator.platform import instance_id

IMAGE = "agenthost/python:bookworm"
COMMAND = ["python3", "-c", "print(6 * 7)"]


def cold_run(client: docker.DockerClient, i: int) -> float:
    started = time.monotonic()
    container = client.containers.run(
        IMAGE,
        ["sleep", "infinity"],
        name=f"ah-bench-cold-{i}",
        detach=True,
        runtime="runsc",
        init=True,
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m", "/workspace": "rw,nosuid,nodev,size=256m"},
        working_dir="/workspace",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="512m",
        nano_cpus=1_000_000_000,
        pids_limit=256,
    )
    out = container.exec_run(COMMAND)
    elapsed = time.monotonic() - started
    assert out.output == b"42\n", out
    container.remove(force=True)
    return elapsed


def instance_of(platform: Platform) -> str:
    return instance_id((platform.dir / "master.key").read_bytes())


async def pool_full(client: docker.DockerClient, platform: Platform, size: int) -> None:
    label = [f"agenthost.instance={instance_of(platform)}", "agenthost.tenant=pool"]
    with anyio.fail_after(300):
        while len(client.containers.list(filters={"label": label, "status": "running"})) < size:
            await anyio.sleep(0.2)


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    platform = Platform(AGENTHOST_SANDBOX_POOL_SIZE="2")
    ours: list[float] = []
    raw: list[float] = []
    served = 0
    try:
        async with platform.client() as mcp:
            cold_run(client, -1)  # warm-up, untimed
            await tool(mcp, "create_sandbox", {"name": "warm"})  # the first request of a shape warms its pool
            await tool(mcp, "delete_sandbox", {"sandbox": "warm", "confirm": True})
            for i in range(rounds):
                await pool_full(client, platform, 2)
                started = time.monotonic()
                sbx = await tool(mcp, "create_sandbox", {"name": f"b{i}"})
                r = await tool(mcp, "exec", {"sandbox": f"b{i}", "command": COMMAND})
                ours.append(time.monotonic() - started)
                assert r["exit_code"] == 0 and "42" in r["stdout"], r
                served += sbx["from_pool"]
                await tool(mcp, "delete_sandbox", {"sandbox": f"b{i}", "confirm": True})
                raw.append(await anyio.to_thread.run_sync(cold_run, client, i))
    finally:
        platform.cleanup(client)
        for c in client.containers.list(all=True, filters={"label": f"agenthost.instance={instance_of(platform)}"}):
            c.remove(force=True)
    print(f"{served} of {rounds} sandboxes came from the warm pool")
    report("create_sandbox + first exec (warm pool) vs cold docker run + exec", ours, raw, "docker run")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
