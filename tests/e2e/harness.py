"""Driving agenthost as a user would: a real MCP client over stdio or streamable HTTP, or REST over httpx."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import docker
import httpx
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from orchestrator.settings import Settings

__all__ = ["AgentHost", "ToolFailed", "call", "connect", "free_port", "until", "wait_for"]

VENV_BIN = Path(sys.executable).parent
_ERROR = re.compile(r"\[([a-z_]+)\] (.*)", re.DOTALL)


class ToolFailed(Exception):
    def __init__(self, tool: str, code: str, message: str) -> None:
        super().__init__(f"{tool}: [{code}] {message}")
        self.code = code
        self.message = message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll a synchronous condition until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class AgentHost:
    """One data dir for the session, an admin key, tenants made on demand, and a lazily started HTTP server."""

    data_dir: Path
    admin_key: str = ""
    tenants: dict[str, str] = field(default_factory=dict)  # name -> key
    tenant_ids: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra AGENTHOST_* settings for every process
    _server: subprocess.Popen[bytes] | None = None
    _url: str | None = None

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, **{k[10:].lower(): v for k, v in self.env.items()})

    def process_env(self, key: str | None = None) -> dict[str, str]:
        env = {**os.environ, **self.env, "AGENTHOST_DATA_DIR": str(self.data_dir)}
        if key:
            env["AGENTHOST_API_KEY"] = key
        return env

    def cli(self, *args: str) -> str:
        """Run the `agenthost` CLI on this data dir; returns its stdout."""
        proc = subprocess.run(
            [str(VENV_BIN / "agenthost"), *args], env=self.process_env(), capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise AssertionError(f"agenthost {' '.join(args)} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def init(self) -> None:
        out = self.cli("init")
        self.admin_key = re.search(r"ah_[0-9a-f]{16}\.\S+", out).group(0)  # type: ignore[union-attr]
        listing = self.cli("tenant", "list")
        self.tenant_ids["admin"] = listing.split()[1]

    def tenant(self, name: str) -> str:
        """The key of tenant ``name``, created on first use with `agenthost tenant create`."""
        if name not in self.tenants:
            out = self.cli("tenant", "create", name)
            self.tenant_ids[name] = re.search(r"\((t_[0-9a-f]+)\)", out).group(1)  # type: ignore[union-attr]
            self.tenants[name] = re.search(r"ah_[0-9a-f]{16}\.\S+", out).group(0)  # type: ignore[union-attr]
        return self.tenants[name]

    @property
    def url(self) -> str:
        """Base URL of `agenthost serve` on this data dir (started on first use)."""
        if self._url is None:
            port = free_port()
            self._server = subprocess.Popen(
                [str(VENV_BIN / "agenthost"), "serve", "--port", str(port)],
                env=self.process_env(),
                stdout=subprocess.DEVNULL,
                stderr=open(self.data_dir / "serve.log", "ab"),  # noqa: SIM115
            )
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                if self._server is not None and self._server.poll() is not None:
                    raise AssertionError(f"agenthost serve exited: {(self.data_dir / 'serve.log').read_text()[-3000:]}")
                try:
                    return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, 30, what="agenthost serve")
            self._url = url
        return self._url

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                self._server.kill()

    def cleanup_engine(self) -> None:
        """Remove whatever this session's tenants left in Docker (a test that failed half-way)."""
        client = docker.from_env(version="auto")
        for tid in self.tenant_ids.values():
            label = f"agenthost.tenant={tid}"
            for c in client.containers.list(all=True, filters={"label": label}):
                c.remove(force=True)
            for v in client.volumes.list(filters={"label": label}):
                v.remove(force=True)
            for n in client.networks.list(filters={"label": label}):
                n.remove()
        client.close()


@asynccontextmanager
async def connect(host: AgentHost, key: str, transport: str, **client_kwargs: Any) -> AsyncIterator[Client]:
    """An MCP client session as `key`, over 'stdio' (spawning `agenthost mcp`) or 'http' (`agenthost serve`)."""
    if transport == "stdio":
        params = StdioServerParameters(command=str(VENV_BIN / "agenthost"), args=["mcp"], env=host.process_env(key))
        async with Client(params, **client_kwargs) as client:
            yield client
    elif transport == "http":
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            async with Client(streamable_http_client(f"{host.url}/mcp", http_client=http), **client_kwargs) as client:
                yield client
    else:
        raise ValueError(transport)


def parse_error(tool: str, result: CallToolResult) -> ToolFailed:
    text = " ".join(getattr(c, "text", "") for c in result.content)
    match = _ERROR.search(text)
    return ToolFailed(tool, match.group(1), match.group(2)) if match else ToolFailed(tool, "unknown", text)


async def until(
    client: Client,
    tool: str,
    args: dict[str, Any],
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
    interval: float = 0.5,
) -> dict[str, Any]:
    """Poll a read tool until its output satisfies ``predicate``; fail after ``timeout``."""
    result: dict[str, Any] = {}
    with anyio.move_on_after(timeout):
        while True:
            result = await call(client, tool, args)
            if predicate(result):
                return result
            await anyio.sleep(interval)
    raise AssertionError(f"{tool} never satisfied the condition within {timeout} s; last: {result}")


async def call(client: Client, tool: str, args: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Call a tool; return its structured output or raise ToolFailed with the error code."""
    result = await client.call_tool(tool, args or {}, **kwargs)
    if result.is_error:
        raise parse_error(tool, result)
    assert result.structured_content is not None, f"{tool} returned no structured content"
    return result.structured_content
