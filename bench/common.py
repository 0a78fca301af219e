"""Shared by the benchmarks: a throwaway platform, a tenant, an MCP client, medians."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docker
import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters

BIN = Path(sys.executable).parent / "agenthost"
HELLO = textwrap.dedent(
    """
    import http.server
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
    """
)


# What agenthost applies to a service container, for the raw side of a comparison.
HARDENED: dict[str, Any] = {
    "runtime": "runsc",
    "read_only": True,
    "tmpfs": {
        "/tmp": "rw,nosuid,nodev,size=64m",
        "/run": "rw,nosuid,nodev,size=16m",
        "/var/tmp": "rw,nosuid,nodev,size=16m",
    },
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "mem_limit": "256m",
    "memswap_limit": "256m",
    "nano_cpus": 500_000_000,
    "pids_limit": 256,
    "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 5},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def report(title: str, ours: list[float], raw: list[float], raw_label: str) -> None:
    m_ours, m_raw = median_ms(ours), median_ms(raw)
    print(f"{title}: n={len(ours)}")
    print(f"  agenthost  median {m_ours:8.1f} ms   (min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f})")
    print(f"  {raw_label:<10} median {m_raw:8.1f} ms   (min {min(raw) * 1000:.1f}, max {max(raw) * 1000:.1f})")
    print(f"  ratio agenthost/raw = {m_ours / m_raw:.2f}, difference {m_ours - m_raw:+.1f} ms")


def build_hello(client: docker.DockerClient, base: str = "agenthost/python:bookworm") -> str:
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "app.py").write_text(HELLO)
        (Path(ctx) / "Dockerfile").write_text(f'FROM {base}\nCOPY app.py /app/app.py\nCMD ["python3", "/app/app.py"]\n')
        client.images.build(path=ctx, tag="ah-bench/hello:1", rm=True, pull=False)
    return "ah-bench/hello:1"


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(url)


class Platform:
    """A fresh data dir with one tenant; removed with everything it ran when done."""

    def __init__(self, **env: str) -> None:
        """``env``: settings beyond the bench's own: its hello image (built here) is one the operator allows,
        every toolset is listed, and no proxy is programmed (the raw side has none; bench the ingress apart)."""
        self.dir = Path(tempfile.mkdtemp(prefix="ah-bench-"))
        own = {"AGENTHOST_IMAGE_ALLOW": "ah-bench/*", "AGENTHOST_TOOLSETS": "all", "AGENTHOST_INGRESS": "false"}
        self.env = {**os.environ, "AGENTHOST_DATA_DIR": str(self.dir), **own, **env}
        subprocess.run([str(BIN), "init"], env=self.env, check=True, capture_output=True)
        out = subprocess.run(
            [str(BIN), "tenant", "create", "bench"], env=self.env, check=True, capture_output=True, text=True
        ).stdout
        self.key = re.search(r"ah_[0-9a-f]{16}\.\S+", out).group(0)  # type: ignore[union-attr]
        self.tenant_id = re.search(r"\((t_[0-9a-f]+)\)", out).group(1)  # type: ignore[union-attr]

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        params = StdioServerParameters(command=str(BIN), args=["mcp"], env={**self.env, "AGENTHOST_API_KEY": self.key})
        async with Client(params) as client:
            yield client

    def cleanup(self, docker_client: docker.DockerClient) -> None:
        label = {"label": f"agenthost.tenant={self.tenant_id}"}
        for c in docker_client.containers.list(all=True, filters=label):
            c.remove(force=True)
        for v in docker_client.volumes.list(filters=label):
            v.remove(force=True)
        for n in docker_client.networks.list(filters=label):
            n.remove()


async def tool(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    if result.is_error:
        raise RuntimeError(f"{name}: {result.content}")
    assert result.structured_content is not None
    return result.structured_content
