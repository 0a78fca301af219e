"""The control plane at scale: 1,000 services (50 tenants of 20, each tenant's quota) over the in-memory engine.

The engine is the unit suite's FakeBackend (tests/fakes.py), so what is measured is agenthost's own work, not
Docker's: each engine call answers from a dict. The services are deployed through the platform's use-cases
(records, revisions, workloads), then

1. the reconciler's pass over the 1,000 records (in this process, steady state: nothing to repair);
2. `agenthost serve`'s app over a fresh in-memory engine in a child process (its first reconciler pass puts the
   1,000 workloads back), and one MCP client over streamable HTTP calling list_services (a tenant's 20),
   get_service and an admin's platform_status (counting all 1,000) one after another: p50 and p99;
3. the server's resident memory (RSS) with the 1,000 services.

Usage: .venv/bin/python bench/scale.py [CALLS]            (CALLS per tool, default 300)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.append(str(Path(__file__).resolve().parent.parent))  # tests.fakes (PYTHONPATH picks the tree)

from serving import RawClient, Server, raw_client  # noqa: E402

from common import free_port, wait_http  # noqa: E402
from orchestrator.platform import Platform  # noqa: E402
from orchestrator.secrets import write_master_key  # noqa: E402
from orchestrator.services.requests import DeployRequest  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from tests.fakes import FakeBackend, FakeBuilder  # noqa: E402

TENANTS = 50
PER_TENANT = 20
IMAGE = "bench.test/app:1"


def _settings(data: Path) -> Settings:
    return Settings(
        data_dir=data,
        image_allow=["bench.test/*"],
        toolsets=["all"],
        sandbox_pool_size=0,
        ingress=False,
        rate_limit_per_minute=0,
        ssh_port=free_port(),
        ssh_bind="127.0.0.1",
    )


def _engine(settings: Settings) -> FakeBackend:
    return FakeBackend({IMAGE, settings.image_python, settings.image_base})


async def _populate(settings: Settings) -> tuple[str, list[str]]:
    """1,000 services of 50 tenants; the admin key and each tenant's key."""
    async with Platform.open(settings, backend=_engine(settings), builder=FakeBuilder()) as platform:
        admin = await platform.tenants.bootstrap()
        assert admin is not None
        keys = []
        started = time.monotonic()
        for t in range(TENANTS):
            _, key = await platform.tenants.create_tenant(None, f"scale{t}")
            keys.append(key.key)
            principal = await platform.tenants.authenticate(key.key)
            for s in range(PER_TENANT):
                req = DeployRequest(
                    name=f"svc{s}", image=IMAGE, port=8000, health_check={"type": "none"}, memory_mb=64, cpus=0.25
                )
                await platform.services.deploy(principal, req)
        took = time.monotonic() - started
        print(f"{TENANTS * PER_TENANT} services of {TENANTS} tenants deployed in {took:.1f} s (in-memory engine)")
        passes = []
        for _ in range(5):
            started = time.monotonic()
            counts = await platform.reconciler.reconcile_once()
            passes.append(time.monotonic() - started)
        assert counts["redeployed"] == 0, counts
        print(
            f"reconciler pass over {TENANTS * PER_TENANT} records: median {statistics.median(passes) * 1000:.0f} ms"
            f" (of {len(passes)}; min {min(passes) * 1000:.0f}, max {max(passes) * 1000:.0f})"
        )
        return admin.key, keys


def _serve_child(data: str, port: int) -> None:
    """In the child: the HTTP app over a fresh in-memory engine (the reconciler puts the workloads back)."""
    import uvicorn

    from mcp_server.app import build_http_app

    settings = _settings(Path(data))
    app = build_http_app(settings, backend=_engine(settings), builder=FakeBuilder())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


async def _timed(client: RawClient, name: str, args: dict[str, Any], calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.monotonic()
        result = await client.call_tool(name, args)
        samples.append(time.monotonic() - started)
        assert not result.is_error, result.content
    return samples


def _line(name: str, samples: list[float], target: str) -> str:
    s = sorted(samples)
    p50, p99 = statistics.median(s) * 1000, s[min(len(s) - 1, int(len(s) * 0.99))] * 1000
    return f"  {name:<34} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   (target p50 {target})"


async def main(calls: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="ah-scale-"))
    data.chmod(0o700)
    write_master_key(data / "master.key")
    settings = _settings(data)
    admin, keys = await _populate(settings)
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"http://127.0.0.1:{port}", child)  # type: ignore[arg-type]
    try:
        await anyio.to_thread.run_sync(wait_http, f"{server.url}/v1/health")
        async with raw_client(server, admin) as c:
            with anyio.fail_after(120):  # the first reconciler pass puts the 1,000 workloads back
                while (await c.call_tool("platform_status", {})).content.get("reconcile_passes", 0) < 1:
                    await anyio.sleep(0.2)
        async with raw_client(server, keys[0]) as c:
            listed = await c.call_tool("list_services", {})
            assert len(listed.content["services"]) == PER_TENANT, listed.content
            assert all(s["status"] == "running" for s in listed.content["services"]), listed.content
            await _timed(c, "list_services", {}, 20)  # warm-up
            lists = await _timed(c, "list_services", {}, calls)
            gets = await _timed(c, "get_service", {"service": "svc7"}, calls)
        async with raw_client(server, admin) as c:
            status = await c.call_tool("platform_status", {})
            assert status.content["counts"]["services"] == TENANTS * PER_TENANT, status.content
            statuses = await _timed(c, "platform_status", {}, calls)
        print(f"over MCP (streamable HTTP), one client, {calls} calls each, {TENANTS * PER_TENANT} services held:")
        print(_line(f"list_services (a tenant's {PER_TENANT})", lists, "<= 10 ms"))
        print(_line("get_service", gets, "<= 5 ms"))
        print(_line(f"platform_status (admin, all {TENANTS * PER_TENANT})", statuses, "-"))
        print(f"server RSS with {TENANTS * PER_TENANT} services: {server.rss_mb():.0f} MB")
    finally:
        child.terminate()
        child.wait(30)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve_child(sys.argv[2], int(sys.argv[3]))
    else:
        anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 300)
