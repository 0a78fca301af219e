"""Where exec's time over streamable HTTP goes inside the server: `/bin/echo hello` in one runsc service through
the `exec` tool, beside a raw `exec_run` on the same container and two reads, each layer timed in the server.

The server is `agenthost serve` with timers (bench/timed_serve.py); the client is bench/serving.py's raw
JSON-RPC client, so no client-side checks count. Per call, from the spans of that call (medians of the
per-call differences):

- outside the server: the client's time less the server's (the HTTP exchange, uvicorn, the client);
- the transport in the server: the server's time less the tool's (bearer auth, the body limit, the session
  gate, the SDK's request handling, validation and the answer's serialization);
- the tool layer: the tool's time less the backend's exec (the gate, the store reads, masking, the audit row);
- the backend's exec, beside the round's `exec_run`.

The reads run twice a round: at once after the previous call, and after 85 ms of idle, as long as an exec
keeps the server waiting. What the second costs over the first is the machine waking from idle, which an
exec's own transport pays too.

Usage: .venv/bin/python bench/exec_server.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import docker
import httpx2
from serving import RawClient, Server

from common import Platform, build_hello, free_port, wait_http

COMMAND = ["/bin/echo", "hello"]
WARMUP = 3
IDLE_S = 0.085
HERE = Path(__file__).resolve().parent


@asynccontextmanager
async def timed_server(bench: Platform, spans_out: Path) -> AsyncIterator[Server]:
    port = free_port()
    env = {**bench.env, "SPANS_OUT": str(spans_out)}
    args = [sys.executable, str(HERE / "timed_serve.py"), "serve", "--port", str(port)]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await anyio.to_thread.run_sync(wait_http, f"http://127.0.0.1:{port}/v1/health")
        yield Server(f"http://127.0.0.1:{port}", process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@asynccontextmanager
async def client(server: Server, key: str, label: str | None = None) -> AsyncIterator[RawClient]:
    headers = {
        "Authorization": f"Bearer {key}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
    }
    if label is not None:
        headers["x-bench-label"] = label
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        yield RawClient(http, f"{server.url}/mcp")


async def call(raw: RawClient, samples: dict[str, list[float]], label: str, name: str, args: dict) -> None:
    started = time.perf_counter()
    answer = await raw.call_tool(name, args)
    samples.setdefault(label, []).append(time.perf_counter() - started)
    assert not answer.is_error, answer


async def drive(bench: Platform, image: str, rounds: int, spans_out: Path) -> dict[str, list[float]]:
    docker_client = docker.from_env(version="auto")
    samples: dict[str, list[float]] = {}
    async with (
        timed_server(bench, spans_out) as server,
        client(server, bench.key) as raw,
        client(server, bench.key, "list_sandboxes after idle") as idle_list,
        client(server, bench.key, "get_service after idle") as idle_get,
    ):
        svc = await raw.call_tool("deploy_service", {"name": "target", "image": image, "port": 8000})
        assert not svc.is_error, svc
        container = docker_client.containers.get(f"ah-{svc.content['id']}")
        target = {"service": "target"}
        for _ in range(WARMUP + rounds):
            started = time.perf_counter()
            await anyio.to_thread.run_sync(lambda: container.exec_run(COMMAND))
            samples.setdefault("exec_run", []).append(time.perf_counter() - started)
            await call(raw, samples, "exec", "exec", {**target, "command": COMMAND})
            await call(raw, samples, "get_service", "get_service", target)
            await call(raw, samples, "list_sandboxes", "list_sandboxes", {})
            await anyio.sleep(IDLE_S)
            await call(idle_get, samples, "get_service after idle", "get_service", target)
            await anyio.sleep(IDLE_S)
            await call(idle_list, samples, "list_sandboxes after idle", "list_sandboxes", {})
        await raw.call_tool("delete_service", {**target, "confirm": True})
    spans = json.loads(spans_out.read_text())
    for label, values in spans.items():
        samples[f"server {label}"] = values
    return {label: values[WARMUP:] for label, values in samples.items()}


def per_call(samples: dict[str, list[float]], minuend: str, subtrahend: str) -> float:
    pairs = zip(samples[minuend], samples[subtrahend], strict=True)
    return statistics.median(a - b for a, b in pairs) * 1000


def show(samples: dict[str, list[float]]) -> None:
    def ms(label: str) -> float:
        return statistics.median(samples[label]) * 1000

    def row(label: str, value: float, indent: int = 2) -> None:
        print(f"{' ' * indent}{label:<{48 - indent}} {value:8.2f}")

    print(f"exec of {' '.join(COMMAND)} over streamable HTTP, raw client, n={len(samples['exec'])} (medians, ms):")
    row("the client's time", ms("exec"))
    row("a raw exec_run in the same round", ms("exec_run"))
    row("the client's time less exec_run", per_call(samples, "exec", "exec_run"))
    row("outside the server (HTTP, uvicorn, the client)", per_call(samples, "exec", "server exec: server"))
    row("the transport in the server", per_call(samples, "server exec: server", "server exec: tool"))
    row("before the tool", ms("server exec: before the tool"), 4)
    for label in samples:
        if label.startswith("server exec: step: "):
            row(label.removeprefix("server exec: step: "), ms(label), 6)
    row("after the tool, to the answer's start", ms("server exec: after the tool, to the answer's start"), 4)
    row("the answer's sending", ms("server exec: the answer's sending"), 4)
    row("the tool layer", per_call(samples, "server exec: tool", "server exec: backend exec"))
    row("of which the audit row", ms("server exec: audit row"), 4)
    row("of which the store reads", ms("server exec: store reads"), 4)
    row("the backend's exec", ms("server exec: backend exec"))
    row("the backend's exec less exec_run", per_call(samples, "server exec: backend exec", "exec_run"))
    for name in ("get_service", "list_sandboxes"):
        print(f"{name}, at once after the previous call / after {IDLE_S * 1000:.0f} ms idle (medians, ms):")
        for label in (name, f"{name} after idle"):
            outside = per_call(samples, label, f"server {label}: server")
            transport = per_call(samples, f"server {label}: server", f"server {label}: tool")
            parts = "/".join(
                f"{ms(f'server {label}: {part}'):.2f}"
                for part in ("before the tool", "after the tool, to the answer's start", "the answer's sending")
            )
            print(
                f"  {label:<26} client {ms(label):6.2f}   outside {outside:5.2f}   transport {transport:5.2f}"
                f" ({parts})   tool {ms(f'server {label}: tool'):5.2f}"
            )


async def main(rounds: int) -> None:
    docker_client = docker.from_env(version="auto")
    image = build_hello(docker_client)
    bench = Platform(AGENTHOST_SANDBOX_POOL_SIZE="0")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            samples = await drive(bench, image, rounds, Path(tmp) / "spans.json")
        finally:
            bench.cleanup(docker_client)
    show(samples)


if __name__ == "__main__":
    os.chdir(HERE)
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
