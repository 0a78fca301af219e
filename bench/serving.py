"""For the control-plane benches: `agenthost serve` on a bench platform, more tenants, MCP clients over
streamable HTTP, per-tool latency tables and the server's resident memory."""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from common import BIN, Platform, free_port, wait_http

PROTOCOL = "2026-07-28"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def rss_mb(self) -> float:
        """Resident memory of the server process, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        return cpu_s(self.process.pid)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is not there)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dockerd_pid() -> int:
    """The Docker daemon that serves /var/run/docker.sock (0 when unknown)."""
    try:
        return int(Path("/var/run/docker.pid").read_text())
    except (OSError, ValueError):
        return 0


@asynccontextmanager
async def serve(platform: Platform, extra_args: list[str] | None = None) -> AsyncIterator[Server]:
    """`agenthost serve` on the bench data dir; stopped when the block ends."""
    port = free_port()
    args = [str(BIN), "serve", "--port", str(port), *(extra_args or [])]
    process = subprocess.Popen(args, env=platform.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await anyio.to_thread.run_sync(wait_http, f"http://127.0.0.1:{port}/v1/health")
        yield Server(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        process.wait(30)


@asynccontextmanager
async def mcp_client(server: Server, key: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
            yield client


@asynccontextmanager
async def http_client(platform: Platform) -> AsyncIterator[Client]:
    """`agenthost serve` on the bench data dir and an MCP client of the platform's tenant over streamable HTTP."""
    async with serve(platform) as server, mcp_client(server, platform.key) as client:
        yield client


@dataclass
class RawResult:
    is_error: bool
    content: Any


class RawClient:
    """The smallest MCP client: the single-exchange POST of protocol 2026-07-28, byte for byte what the SDK's
    client sends for tools/call, without the SDK's client-side work (validating every answer against the
    tool's output schema). A load generator on the server's own cores then takes less of them."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url
        self._ids = itertools.count(1)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> RawResult:
        meta = {
            "io.modelcontextprotocol/protocolVersion": PROTOCOL,
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": "tools/call"}
        body["params"] = {"name": name, "arguments": arguments, "_meta": meta}
        headers = {"mcp-method": "tools/call", "mcp-name": name}
        response = await self._http.post(self._url, content=json.dumps(body), headers=headers)
        if response.status_code != 200:
            return RawResult(True, f"HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json()
        if "error" in answer:
            return RawResult(True, answer["error"])
        result = answer["result"]
        return RawResult(bool(result.get("isError")), result.get("structuredContent") or result.get("content"))


@asynccontextmanager
async def raw_client(server: Server, key: str) -> AsyncIterator[RawClient]:
    headers = {
        "Authorization": f"Bearer {key}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": PROTOCOL,
    }
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        yield RawClient(http, f"{server.url}/mcp")


def add_tenant(platform: Platform, name: str) -> tuple[str, str]:
    """Another tenant on the bench platform: (its first key, its id)."""
    out = subprocess.run(
        [str(BIN), "tenant", "create", name], env=platform.env, check=True, capture_output=True, text=True
    ).stdout
    key = re.search(r"ah_[0-9a-f]{16}\.\S+", out).group(0)  # type: ignore[union-attr]
    tenant_id = re.search(r"\((t_[0-9a-f]+)\)", out).group(1)  # type: ignore[union-attr]
    return key, tenant_id


@dataclass
class Latencies:
    """Seconds per call, by tool; errors by tool with the first message of each."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)

    def add(self, tool: str, seconds: float) -> None:
        self.samples.setdefault(tool, []).append(seconds)

    def error(self, tool: str, message: str) -> None:
        self.errors[tool] = self.errors.get(tool, 0) + 1
        self.first_error.setdefault(tool, message[:300])

    @property
    def calls(self) -> int:
        return sum(len(s) for s in self.samples.values()) + sum(self.errors.values())

    def table(self) -> str:
        rows = [f"  {'tool':<16} {'calls':>6} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}"]
        for name in sorted(set(self.samples) | set(self.errors)):
            s = sorted(self.samples.get(name, []))
            p50 = statistics.median(s) * 1000 if s else float("nan")
            p99 = s[min(len(s) - 1, int(len(s) * 0.99))] * 1000 if s else float("nan")
            rows.append(f"  {name:<16} {len(s):>6} {self.errors.get(name, 0):>6} {p50:>8.1f} {p99:>8.1f}")
        rows += [f"  first error of {name}: {msg}" for name, msg in sorted(self.first_error.items())]
        return "\n".join(rows)
