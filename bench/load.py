"""Many agents at once: concurrent MCP clients over streamable HTTP against one `agenthost serve`.

Five tenants hold four running services each (20 in all, the bench hello app under runsc). Then each phase
runs for DURATION seconds with CLIENTS clients (ten per tenant), every client calling tools back to back:

- read:  whoami, list_services, get_service, platform_status (the mix of the first measurement, issue 15)
- mixed: list_services, get_service, exec, service_logs, whoami, platform_status
- churn: as mixed, while DEPLOYERS of the clients deploy a service with a volume, wait for it, and delete it,
  in a loop; afterwards the bench checks that nothing of theirs is left (containers, volumes, rows)

It prints calls, errors, calls/s and p50/p99 per tool, the server's CPU seconds per call and its memory.
The load generator shares the machine with the server: calls/s is what both together manage on it.
The per-tenant caps that guard fairness (rate limit, calls in flight, execs, sessions) are raised for the run:
fifty agents of five tenants are far past them, and the bench measures the platform, not its refusals.

Usage: .venv/bin/python bench/load.py [--duration 60] [--clients 50] [--deployers 10] [--phases read,mixed,churn]
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import docker
from mcp import Client
from serving import Latencies, RawClient, Server, add_tenant, cpu_s, dockerd_pid, mcp_client, raw_client, serve

from common import Platform, build_hello, tool

TENANTS = 5
SERVICES_PER_TENANT = 4
CAPS = {
    "AGENTHOST_RATE_LIMIT_PER_MINUTE": "0",
    "AGENTHOST_TENANT_MAX_INFLIGHT": "64",
    "AGENTHOST_TENANT_MAX_CONCURRENT_EXECS": "64",
    "AGENTHOST_MCP_SESSIONS_PER_TENANT": "64",
    "AGENTHOST_SANDBOX_POOL_SIZE": "0",
}
READ = ["whoami", "list_services", "get_service", "platform_status"]
MIXED = ["list_services", "get_service", "exec", "service_logs", "whoami", "platform_status"]


def _args(name: str, services: list[str]) -> dict[str, Any]:
    target = random.choice(services)
    if name == "get_service":
        return {"service": target}
    if name == "exec":
        return {"service": target, "command": ["echo", "hello"]}
    if name == "service_logs":
        return {"service": target, "tail": 20}
    return {}


async def _reader(
    client: Client | RawClient, services: list[str], mix: list[str], until: float, lat: Latencies
) -> None:
    while time.monotonic() < until:
        name = random.choice(mix)
        started = time.monotonic()
        try:
            result = await client.call_tool(name, _args(name, services))
        except Exception as exc:  # a transport failure is one more error to count, not the end of the run
            lat.error(name, f"{type(exc).__name__}: {exc}")
            continue
        if result.is_error:
            lat.error(name, str(result.content))
        else:
            lat.add(name, time.monotonic() - started)


async def _deployer(client: Client | RawClient, image: str, number: int, until: float, lat: Latencies) -> None:
    for round_ in itertools.count():
        if time.monotonic() >= until:
            return
        name = f"churn-{number}-{round_}"
        for tool_name, args in (
            (
                "deploy_service",
                {"name": name, "image": image, "port": 8000, "volumes": [{"name": f"{name}-data", "path": "/data"}]},
            ),
            ("delete_service", {"service": name, "confirm": True}),
        ):
            started = time.monotonic()
            try:
                result = await client.call_tool(tool_name, args)
            except Exception as exc:
                lat.error(tool_name, f"{type(exc).__name__}: {exc}")
                continue
            if result.is_error:
                lat.error(tool_name, str(result.content))
            else:
                lat.add(tool_name, time.monotonic() - started)


async def _phase(
    server: Server,
    tenants: list[tuple[str, str, list[str]]],
    image: str,
    name: str,
    clients: int,
    deployers: int,
    duration: float,
    profile: str | None,
    kind: str,
) -> Latencies:
    mix = READ if name == "read" else MIXED
    lat = Latencies()
    ready = anyio.Event()
    opened = 0

    async def agent(i: int, key: str, services: list[str]) -> None:
        nonlocal opened
        async with (raw_client if kind == "raw" else mcp_client)(server, key) as client:
            await client.call_tool("whoami", {})  # the session is up before the clock starts
            opened += 1
            if opened == clients:
                ready.set()
            await ready.wait()
            until = time.monotonic() + duration
            if name == "churn" and i < deployers:
                await _deployer(client, image, i, until, lat)
            else:
                await _reader(client, services, mix, until, lat)

    profiler = _profile(server, profile, duration) if profile else None
    cpu0, docker0, own0 = server.cpu_s(), cpu_s(dockerd_pid()), _own_cpu_s()
    async with anyio.create_task_group() as tg:
        for i in range(clients):
            key, _, services = tenants[i % len(tenants)]
            tg.start_soon(agent, i, key, services)
        await ready.wait()
        started = time.monotonic()
    elapsed = time.monotonic() - started
    cpu = server.cpu_s() - cpu0
    docker_cpu, own_cpu = cpu_s(dockerd_pid()) - docker0, _own_cpu_s() - own0
    if profiler is not None:
        profiler.wait()
    calls = lat.calls
    label = f"{name}, {clients} clients" + (f" ({deployers} deploying and deleting)" if name == "churn" else "")
    print(
        f"\n{label}, {duration:.0f} s: {calls} calls, {sum(lat.errors.values())} errors, {calls / elapsed:.0f} calls/s"
    )
    per_call = 1000 / max(calls, 1)
    print(
        f"  CPU a call: server {cpu * per_call:.2f} ms, dockerd {docker_cpu * per_call:.2f} ms,"
        f" load generator ({kind} clients) {own_cpu * per_call:.2f} ms; server RSS {server.rss_mb():.0f} MB"
    )
    print(lat.table())
    return lat


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _profile(server: Server, path: str, duration: float) -> subprocess.Popen[bytes]:
    """py-spy samples the server for the phase (collapsed stacks, as flamegraph tools read them)."""
    spy = Path(sys.executable).parent / "py-spy"
    args = [str(spy), "record", "--pid", str(server.process.pid), "--format", "raw", "--output", path]
    return subprocess.Popen([*args, "--duration", str(int(duration)), "--rate", "200", "--nonblocking", "--gil"])


def _orphans(platform: Platform, client: docker.DockerClient, tenant_ids: list[str]) -> list[str]:
    """What the churn left: containers, volumes or rows of the churn-* services (or of no service at all)."""
    with sqlite3.connect(f"file:{platform.dir / 'agenthost.db'}?mode=ro", uri=True) as db:
        left = [f"row services/{r[0]}" for r in db.execute("SELECT name FROM services WHERE name LIKE 'churn-%'")]
        for table in ("env_vars", "service_revisions"):
            orphaned = db.execute(
                f"SELECT DISTINCT service_id FROM {table} WHERE service_id NOT IN (SELECT id FROM services)"
            )
            left += [f"row {table}/{r[0]}" for r in orphaned]
        services = {r[0] for r in db.execute("SELECT id FROM services")}
    for tenant_id in tenant_ids:
        label = {"label": f"agenthost.tenant={tenant_id}"}
        containers = client.containers.list(all=True, filters=label)
        left += [f"container {c.name}" for c in containers if c.labels.get("agenthost.id") not in services]
        left += [f"volume {v.name}" for v in client.volumes.list(filters=label) if "churn" in v.name]
    return left


async def main(args: argparse.Namespace) -> None:
    docker_client = docker.from_env(version="auto")
    image = build_hello(docker_client)
    platform = Platform(**CAPS)
    tenants: list[tuple[str, str, list[str]]] = []
    keys = [(platform.key, platform.tenant_id)] + [add_tenant(platform, f"load{i}") for i in range(1, TENANTS)]
    try:
        async with serve(platform) as server:

            async def deploy(key: str, names: list[str]) -> None:
                async with mcp_client(server, key) as c:
                    for n in names:
                        svc = await tool(c, "deploy_service", {"name": n, "image": image, "port": 8000})
                        assert svc["status"] == "running", svc

            started = time.monotonic()
            names = [f"svc{j}" for j in range(SERVICES_PER_TENANT)]
            async with anyio.create_task_group() as tg:
                for key, tenant_id in keys:
                    tg.start_soon(deploy, key, names)
                    tenants.append((key, tenant_id, names))
            print(
                f"{TENANTS * SERVICES_PER_TENANT} services of {TENANTS} tenants up"
                f" in {time.monotonic() - started:.0f} s"
            )
            print(f"caps raised for the run: {', '.join(f'{k}={v}' for k, v in CAPS.items())}")
            for phase in args.phases.split(","):
                profile = f"{args.profile}.{phase}.txt" if args.profile else None
                await _phase(
                    server, tenants, image, phase, args.clients, args.deployers, args.duration, profile, args.client
                )
                if phase == "churn":
                    left = _orphans(platform, docker_client, [t for _, t, _ in tenants])
                    print(f"  orphans after churn: {len(left)}" + (f" ({', '.join(left[:10])})" if left else ""))
    finally:
        platform.cleanup(docker_client)
        for tenant_id in (t for _, t in keys):
            for c in docker_client.containers.list(all=True, filters={"label": f"agenthost.tenant={tenant_id}"}):
                c.remove(force=True)
            for v in docker_client.volumes.list(filters={"label": f"agenthost.tenant={tenant_id}"}):
                v.remove(force=True)
            for n in docker_client.networks.list(filters={"label": f"agenthost.tenant={tenant_id}"}):
                n.remove()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--deployers", type=int, default=10, help="clients that deploy and delete in churn")
    parser.add_argument("--phases", default="read,mixed,churn")
    parser.add_argument(
        "--client", choices=["raw", "sdk"], default="raw", help="raw: serving.RawClient; sdk: the MCP SDK's Client"
    )
    parser.add_argument("--profile", help="sample the server with py-spy into PROFILE.<phase>.txt (collapsed stacks)")
    anyio.run(main, parser.parse_args())
