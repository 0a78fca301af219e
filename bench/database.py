"""create_database (wait=true, over MCP stdio) against a raw `docker run` of the same image + the same readiness wait.

Both sides, per engine: the same image, env and command (the platform's superuser and its password from the
environment, data on a fresh named volume, so Postgres initialises a cluster: the image's template), runsc,
read-only root with tmpfs, no capabilities, no-new-privileges, the engine's own user, memory/CPU/pids limits, the
port published on 127.0.0.1; then the same protocol probe (Postgres asks for authentication, Redis answers AUTH
and PING) every 0.05 s until the database accepts connections. agenthost's time also covers its side of the
work: validation, quota, the encrypted record, the tenant network, the tenant's own role. Runs alternate, so
both see the same machine. The tenant keeps one database throughout, so its private network exists (a tenant's
very first database also makes it). A third column runs the raw container on the networks agenthost's joins
(the egress bridge `ah-eg-none`, and an internal network as the tenant's).
Usage: .venv/bin/python bench/database.py [ROUNDS] [postgres|redis ...]
"""

from __future__ import annotations

import secrets
import sys
import time

import anyio
import docker
from docker.models.networks import Network

from common import HARDENED, Platform, report, tool
from orchestrator.databases.engines import ENGINES, accepts_connections, command_for, env_for, postgres_name, redis_user
from orchestrator.databases.roles import POSTGRES_ADMIN, REDIS_ADMIN
from orchestrator.models import DatabaseSpec
from orchestrator.settings import Settings

EGRESS_BRIDGE = "ah-eg-none"  # made by agenthost: a database has no egress, but its port is published


def _spec(engine: str, name: str, image: str) -> DatabaseSpec:
    user = postgres_name(name) if engine == "postgres" else redis_user(name)
    return DatabaseSpec(
        image=image,
        runtime="runsc",
        memory_mb=256,
        cpus=0.5,
        volume=f"ah-bench-raw-{name}",
        port=ENGINES[engine].port,
        username=user,
        db_name=user if engine == "postgres" else None,
        admin_user=POSTGRES_ADMIN if engine == "postgres" else REDIS_ADMIN,
    )


async def _until_ready(engine: str, spec: DatabaseSpec, password: str, port: int) -> None:
    with anyio.fail_after(120):
        while not await accepts_connections(engine, spec, password, "127.0.0.1", port):  # type: ignore[arg-type]
            await anyio.sleep(0.05)


async def raw_create(
    client: docker.DockerClient, engine: str, image: str, name: str, private: Network | None = None
) -> float:
    spec = _spec(engine, name, image)
    password, admin_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    eng = ENGINES[engine]
    started = time.monotonic()

    def run() -> int:
        client.volumes.create(spec.volume)
        container = client.containers.create(
            image,
            command_for(engine, spec),  # type: ignore[arg-type]
            name=f"ah-bench-raw-{name}",
            environment=env_for(engine, spec, password, admin_password),  # type: ignore[arg-type]
            user=eng.user,
            mounts=[docker.types.Mount(target=eng.data_path, source=spec.volume, type="volume")],
            ports={f"{eng.port}/tcp": ("127.0.0.1", None)},
            **({"network": EGRESS_BRIDGE} if private is not None else {}),
            **HARDENED,
        )
        if private is not None:
            private.connect(container, aliases=[name])
        container.start()
        container.reload()
        return int(container.attrs["NetworkSettings"]["Ports"][f"{eng.port}/tcp"][0]["HostPort"])

    port = await anyio.to_thread.run_sync(run)
    await _until_ready(engine, spec, password, port)
    elapsed = time.monotonic() - started
    client.containers.get(f"ah-bench-raw-{name}").remove(force=True)
    client.volumes.get(spec.volume).remove(force=True)
    return elapsed


async def ours_create(mcp: object, engine: str, name: str) -> float:
    started = time.monotonic()
    db = await tool(mcp, "create_database", {"name": name, "engine": engine})  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert db["status"] == "running", db
    # Check from outside that it does accept connections (not timed: the tool already waited for it).
    conn = await tool(mcp, "database_connection_string", {"database": name, "reveal": True})  # type: ignore[arg-type]
    user, password = conn["url"].split("//")[1].split("@")[0].split(":")
    port = int(conn["external_url"].rsplit(":", 1)[1].split("/")[0])
    spec = _spec(engine, name, "").model_copy(update={"username": user})
    assert await accepts_connections(engine, spec, password, "127.0.0.1", port)  # type: ignore[arg-type]
    await tool(mcp, "delete_database", {"database": name, "confirm": True})  # type: ignore[arg-type]
    return elapsed


async def main(rounds: int, engines: list[str]) -> None:
    client = docker.from_env(version="auto")
    settings = Settings()
    platform = Platform()
    results: dict[str, tuple[list[float], list[float], list[float]]] = {e: ([], [], []) for e in engines}
    private = client.networks.create("ah-bench-private", internal=True)
    try:
        async with platform.client() as mcp:
            await tool(mcp, "create_database", {"name": "anchor", "engine": "redis"})  # type: ignore[arg-type]
            for engine, (ours, raw, raw_nets) in results.items():
                image = str(getattr(settings, ENGINES[engine].image_setting))
                # One warm-up of each, untimed: it warms caches.
                await ours_create(mcp, engine, f"warm-{engine}")
                await raw_create(client, engine, image, f"warm-{engine}")
                for i in range(rounds):
                    ours.append(await ours_create(mcp, engine, f"{engine}-{i}"))
                    raw.append(await raw_create(client, engine, image, f"{engine}-{i}"))
                    raw_nets.append(await raw_create(client, engine, image, f"{engine}-{i}", private))
    finally:
        for container in client.containers.list(all=True, filters={"name": "ah-bench-raw-"}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"name": "ah-bench-raw-"}):
            volume.remove(force=True)
        platform.cleanup(client)
        private.remove()
    for engine, (ours, raw, raw_nets) in results.items():
        report(f"create {engine} until it accepts connections", ours, raw, "docker run")
        report("the same, the raw container on the same two networks", ours, raw_nets, "run+nets")


if __name__ == "__main__":
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 7
    anyio.run(main, rounds, args or ["postgres", "redis"])
