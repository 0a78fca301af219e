"""Where exec's time over MCP goes, layer by layer: `/bin/echo hello` in one runsc service, each layer beside a raw
`exec_run` on the same container, alternating.

1. The two inspects an exec makes beside those `exec_run` makes (the container's, which the exec's watch starts
   from, and the exec's own for its status), through docker-py and over the engine's socket as the backend now
   asks them (`InspectingApi`, orchestrator/backends/docker/inspect.py): the calls alone.
2. The backend's exec (`DockerBackend.exec`) in this process against `exec_run`: what the backend adds.
3. Over streamable HTTP (`agenthost serve`): `exec`, `get_service` and `list_sandboxes` through the SDK's client
   and through bench/serving.py's `RawClient` (the same JSON-RPC, none of the SDK's checks of the answer): what
   the transport, the tool layer and the client add.

Usage: .venv/bin/python bench/exec_split.py [ROUNDS]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import docker
from serving import mcp_client, raw_client, serve

from common import Platform as BenchPlatform
from common import build_hello, median_ms, tool
from orchestrator.backends.base import ExecSpec
from orchestrator.backends.docker.inspect import SocketInspect
from orchestrator.platform import Platform
from orchestrator.services import DeployRequest
from orchestrator.settings import Settings

COMMAND = ["/bin/echo", "hello"]


def timed(samples: dict[str, list[float]], label: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    out = fn()
    samples.setdefault(label, []).append(time.perf_counter() - started)
    return out


def inspects(client: docker.DockerClient, container: Any, rounds: int) -> dict[str, list[float]]:
    api = client.api
    exec_id = api.exec_create(container.id, COMMAND)["Id"]
    api.exec_start(exec_id)
    sock = SocketInspect(api.get_adapter(api.base_url).socket_path, api.api_version)
    samples: dict[str, list[float]] = {}
    for _ in range(rounds * 10):
        timed(samples, "container inspect, docker-py", lambda: api.inspect_container(container.id))
        timed(samples, "container inspect, socket", lambda: sock.container(container.id))
        timed(samples, "exec inspect, docker-py", lambda: api.exec_inspect(exec_id))
        timed(samples, "exec inspect, socket", lambda: sock.exec(exec_id))
    sock.close()
    return samples


async def in_process(client: docker.DockerClient, image: str, rounds: int) -> dict[str, list[float]]:
    bench = BenchPlatform(AGENTHOST_SANDBOX_POOL_SIZE="0")
    os.environ.update(bench.env)
    samples: dict[str, list[float]] = {}
    try:
        async with Platform.open(Settings()) as platform:
            principal = await platform.tenants.authenticate(bench.key)
            svc = await platform.services.deploy(principal, DeployRequest(name="target", image=image, port=8000))
            container = client.containers.get(f"ah-{svc.id}")
            samples = inspects(client, container, rounds)
            for _ in range(3):  # warm-up, untimed
                await platform.backend.exec(svc.id, ExecSpec(COMMAND))
                container.exec_run(COMMAND)
            for _ in range(rounds):
                started = time.perf_counter()
                out = await anyio.to_thread.run_sync(lambda: container.exec_run(COMMAND))
                samples.setdefault("exec_run", []).append(time.perf_counter() - started)
                assert out.output == b"hello\n", out
                started = time.perf_counter()
                result = await platform.backend.exec(svc.id, ExecSpec(COMMAND))
                samples.setdefault("the backend's exec", []).append(time.perf_counter() - started)
                assert result.stdout == "hello\n", result
            await platform.services.delete(principal, "target")
    finally:
        bench.cleanup(client)
    return samples


async def over_http(client: docker.DockerClient, image: str, rounds: int) -> dict[str, list[float]]:
    bench = BenchPlatform(AGENTHOST_SANDBOX_POOL_SIZE="0")
    samples: dict[str, list[float]] = {}
    calls = (
        ("exec", {"service": "target", "command": COMMAND}),
        ("get_service", {"service": "target"}),
        ("list_sandboxes", {}),
    )
    try:
        async with serve(bench) as server, mcp_client(server, bench.key) as sdk, raw_client(server, bench.key) as raw:
            svc = await tool(sdk, "deploy_service", {"name": "target", "image": image, "port": 8000})
            container = client.containers.get(f"ah-{svc['id']}")
            for _ in range(3):  # warm-up, untimed
                for name, args in calls:
                    await tool(sdk, name, args)
                    await raw.call_tool(name, args)
            for _ in range(rounds):
                started = time.perf_counter()
                await anyio.to_thread.run_sync(lambda: container.exec_run(COMMAND))
                samples.setdefault("exec_run", []).append(time.perf_counter() - started)
                for name, args in calls:
                    started = time.perf_counter()
                    await tool(sdk, name, args)
                    samples.setdefault(f"{name}, SDK client", []).append(time.perf_counter() - started)
                    started = time.perf_counter()
                    answer = await raw.call_tool(name, args)
                    samples.setdefault(f"{name}, raw client", []).append(time.perf_counter() - started)
                    assert not answer.is_error, answer
            await tool(sdk, "delete_service", {"service": "target", "confirm": True})
    finally:
        bench.cleanup(client)
    return samples


def show(title: str, samples: dict[str, list[float]]) -> None:
    print(title)
    for label, values in samples.items():
        print(f"  {label:<32} {median_ms(values):8.2f} ms   (n={len(values)})")


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    image = build_hello(client)
    split = await in_process(client, image, rounds)
    show("the inspects alone (medians):", {k: v for k, v in split.items() if "inspect" in k})
    show(f"in this process, {' '.join(COMMAND)} (medians):", {k: v for k, v in split.items() if "inspect" not in k})
    show("over streamable HTTP (medians):", await over_http(client, image, rounds))


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
