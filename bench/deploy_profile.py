"""Where deploy_service's time goes: the use-case run in-process, its phases and every engine call timed.

Opens a throwaway platform in this process (the Docker backend, the same settings as bench/deploy.py), deploys
the bench hello service ROUNDS times (wait=true) and deletes it, with timers around the phases of
ServiceManager.deploy and around each call into the backend. Prints, per span, how often it ran per deploy
and its median total per deploy; engine calls nest inside phases (wait_ready reads watch_workload). What the
MCP transport adds on top is the gap to bench/deploy.py's median.

Usage: .venv/bin/python bench/deploy_profile.py [ROUNDS]
"""

from __future__ import annotations

import functools
import inspect
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import anyio
import docker

from common import Platform as BenchPlatform
from common import build_hello
from orchestrator.platform import Platform
from orchestrator.services import DeployRequest
from orchestrator.settings import Settings

Spans = dict[str, list[float]]


def timed(obj: Any, attr: str, label: str, spans: Spans) -> None:
    fn = getattr(obj, attr)
    if not inspect.iscoroutinefunction(fn):
        return

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spans[label].append(time.perf_counter() - started)

    setattr(obj, attr, wrapper)


def instrument(platform: Platform, spans: Spans) -> None:
    services = platform.services
    for attr in ("resolve_runtime", "check_env_count", "check_quota", "workload_spec", "note", "emit", "view"):
        timed(services, attr, f"deploy: {attr}", spans)
    timed(services.images, "image_of", "deploy: image_of (image policy)", spans)
    timed(services.revisions, "pin", "deploy: revisions.pin", spans)
    timed(services.revisions, "record", "deploy: revisions.record", spans)
    timed(services.health, "wait_ready", "deploy: health.wait_ready", spans)
    timed(services.health, "answers", "  readiness probe (HTTP GET)", spans)
    backend = platform.backend
    for attr in dir(backend):
        if not attr.startswith("_") and inspect.iscoroutinefunction(getattr(backend, attr, None)):
            timed(backend, attr, f"engine: {attr}", spans)


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    image = build_hello(client)
    bench = BenchPlatform()
    os.environ.update(bench.env)
    per_deploy: list[Spans] = []
    totals: list[float] = []
    try:
        async with Platform.open(Settings()) as platform:
            principal = await platform.tenants.authenticate(bench.key)
            spans: Spans = defaultdict(list)
            instrument(platform, spans)
            # The tenant already runs a service, so its private network exists (a first deploy also makes it:
            # see `engine: ensure_workload` of the anchor, printed below).
            spans.clear()
            started = time.perf_counter()
            await platform.services.deploy(principal, DeployRequest(name="anchor", image=image, port=8000))
            first = time.perf_counter() - started
            first_engine = sum(spans["engine: ensure_workload"])
            for i in range(rounds + 1):  # the first is a warm-up
                spans.clear()
                started = time.perf_counter()
                svc = await platform.services.deploy(principal, DeployRequest(name=f"p{i}", image=image, port=8000))
                elapsed = time.perf_counter() - started
                assert svc.status == "running", svc
                if i:
                    per_deploy.append({k: list(v) for k, v in spans.items()})
                    totals.append(elapsed)
                await platform.services.delete(principal, f"p{i}")
    finally:
        bench.cleanup(client)
    labels = sorted({k for d in per_deploy for k in d}, key=lambda k: (not k.startswith("deploy"), k))
    print(f"deploy_service in-process (wait=true), n={rounds}: median {statistics.median(totals) * 1000:.1f} ms")
    print(f"  (the tenant's first service, which also makes its network: {first * 1000:.1f} ms,")
    print(f"   of which ensure_workload {first_engine * 1000:.1f} ms)")
    print(f"  {'span':44} {'calls':>5} {'median ms':>10}")
    for label in labels:
        calls = statistics.median([len(d.get(label, [])) for d in per_deploy])
        ms = statistics.median([sum(d.get(label, [])) for d in per_deploy]) * 1000
        print(f"  {label:44} {calls:5g} {ms:10.1f}")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
