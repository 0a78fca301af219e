"""create_sandbox + first exec from the warm pool, against one raw exec_run on an already running container of
the same image (the floor: a warm sandbox is a running container); then a burst of concurrent creates.

Part 1, side by side, alternating (agenthost over MCP stdio): create_sandbox, served from the warm pool, and
the first exec in it; the sandbox is deleted untimed and the pool refilled before the next round. Raw side:
the Docker SDK's exec_run of the same command in a container of the same image, started once beforehand with
the sandbox's settings (runsc, no network, read-only root, the same limits) and already used once.

Part 2: with a pool of BURST/2 per shape, BURST concurrent create_sandbox calls; prints how many were served
warm (the first BURST/2 should be) and how long the pool took to refill.

Usage: .venv/bin/python bench/sandbox.py [ROUNDS] [--no-burst | --burst-only]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import docker
from mcp import Client

from common import Platform, median_ms, report, tool
from orchestrator.platform import instance_id

IMAGE = "agenthost/python:bookworm"
COMMAND = ["python3", "-c", "print(6 * 7)"]
BURST = 20
SANDBOX: dict[str, Any] = {
    "runtime": "runsc",
    "init": True,
    "network_mode": "none",
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m", "/workspace": "rw,nosuid,nodev,size=256m"},
    "working_dir": "/workspace",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "mem_limit": "512m",
    "nano_cpus": 1_000_000_000,
    "pids_limit": 1024,
}


def raw_exec(container: Any) -> float:
    started = time.monotonic()
    out = container.exec_run(COMMAND)
    elapsed = time.monotonic() - started
    assert out.output == b"42\n", out
    return elapsed


def instance_of(platform: Platform) -> str:
    return instance_id((platform.dir / "master.key").read_bytes())


def pooled(client: docker.DockerClient, platform: Platform, claimed: set[str]) -> int:
    """Running pooled containers not yet claimed (a claimed one keeps the labels it was started with)."""
    label = [f"agenthost.instance={instance_of(platform)}", "agenthost.tenant=pool"]
    running = client.containers.list(filters={"label": label, "status": "running"})
    return len([c for c in running if c.name.removeprefix("ah-") not in claimed])


async def pool_full(
    client: docker.DockerClient, platform: Platform, size: int, claimed: frozenset[str] = frozenset()
) -> None:
    with anyio.fail_after(600):
        while await anyio.to_thread.run_sync(pooled, client, platform, set(claimed)) < size:
            await anyio.sleep(0.2)
    await anyio.sleep(0.5)  # the last one's warm-up exec and mark_ready


def remove_all(client: docker.DockerClient, platform: Platform) -> None:
    platform.cleanup(client)
    for c in client.containers.list(all=True, filters={"label": f"agenthost.instance={instance_of(platform)}"}):
        c.remove(force=True)


async def side_by_side(client: docker.DockerClient, rounds: int) -> None:
    platform = Platform(AGENTHOST_SANDBOX_POOL_SIZE="2")
    ours: list[float] = []
    raw: list[float] = []
    creates: list[float] = []
    served = 0
    floor = client.containers.run(IMAGE, ["sleep", "infinity"], name="ah-bench-floor", detach=True, **SANDBOX)
    try:
        raw_exec(floor)  # already used once, as a claimed sandbox is after its warm-up
        async with platform.client() as mcp:
            await tool(mcp, "create_sandbox", {"name": "warm"})  # the first request of a shape warms its pool
            await tool(mcp, "delete_sandbox", {"sandbox": "warm", "confirm": True})
            for i in range(rounds):
                # Both sides run on a quiet machine: the pool is full (no refill under way) before each.
                await pool_full(client, platform, 2)
                raw.append(await anyio.to_thread.run_sync(raw_exec, floor))
                await pool_full(client, platform, 2)
                started = time.monotonic()
                sbx = await tool(mcp, "create_sandbox", {"name": f"b{i}"})
                created = time.monotonic()
                r = await tool(mcp, "exec", {"sandbox": f"b{i}", "command": COMMAND})
                ours.append(time.monotonic() - started)
                creates.append(created - started)
                assert r["exit_code"] == 0 and "42" in r["stdout"], r
                served += sbx["from_pool"]
                await tool(mcp, "delete_sandbox", {"sandbox": f"b{i}", "confirm": True})
    finally:
        floor.remove(force=True)
        remove_all(client, platform)
    print(f"{served} of {rounds} sandboxes came from the warm pool")
    report("create_sandbox + first exec (warm pool) vs exec_run in a running container", ours, raw, "exec_run")
    first_execs = [total - create for total, create in zip(ours, creates, strict=True)]
    split = f"create_sandbox {median_ms(creates):.1f} ms, the first exec {median_ms(first_execs):.1f} ms"
    print(f"  of which (medians): {split}")


async def burst(client: docker.DockerClient) -> None:
    size = BURST // 2
    quotas = {"max_sandboxes": BURST, "max_memory_mb": 512 * BURST, "max_cpus": float(BURST)}
    platform = Platform(
        AGENTHOST_SANDBOX_POOL_SIZE=str(size),
        AGENTHOST_QUOTAS=json.dumps(quotas),
        AGENTHOST_TENANT_MAX_INFLIGHT=str(BURST),  # one agent's burst, not refused as too many calls at once
    )
    results: list[tuple[float, bool]] = []
    claimed: set[str] = set()
    try:
        async with platform.client() as mcp:
            await tool(mcp, "create_sandbox", {"name": "warm"})
            await tool(mcp, "delete_sandbox", {"sandbox": "warm", "confirm": True})
            await pool_full(client, platform, size)

            async def create(i: int, mcp: Client) -> None:
                started = time.monotonic()
                sbx = await tool(mcp, "create_sandbox", {"name": f"burst{i}"})
                results.append((time.monotonic() - started, bool(sbx["from_pool"])))
                claimed.add(sbx["id"])

            began = time.monotonic()
            async with anyio.create_task_group() as tg:
                for i in range(BURST):
                    tg.start_soon(create, i, mcp)
            await pool_full(client, platform, size, frozenset(claimed))
            refilled = time.monotonic() - began
            for i in range(BURST):
                await tool(mcp, "delete_sandbox", {"sandbox": f"burst{i}", "confirm": True})
    finally:
        remove_all(client, platform)
    warm = [t for t, w in results if w]
    cold = [t for t, w in results if not w]
    print(f"burst of {BURST} concurrent create_sandbox with a pool of {size}: {len(warm)} served warm")
    if warm:
        print(f"  warm  median {median_ms(warm):8.1f} ms (max {max(warm) * 1000:.1f})")
    if cold:
        print(f"  cold  median {median_ms(cold):8.1f} ms (max {max(cold) * 1000:.1f})")
    print(f"  pool full again {refilled:.1f} s after the burst began")


async def main(rounds: int, flags: list[str]) -> None:
    client = docker.from_env(version="auto")
    if "--burst-only" not in flags:
        await side_by_side(client, rounds)
    if "--no-burst" not in flags:
        await burst(client)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    anyio.run(main, int(args[0]) if args else 10, sys.argv[1:])
