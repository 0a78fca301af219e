"""Driving agenthost as a user would: a real MCP client over stdio or streamable HTTP, or REST over httpx."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import docker
import docker.errors
import httpx
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from orchestrator.platform import instance_id
from orchestrator.settings import Settings

from ..gitrepos import git, make_repo
from ..ports import free_port

if TYPE_CHECKING:
    from .nomad_cluster import Cluster  # it imports this module

__all__ = [
    "EGRESS_PROBE",
    "INITIALIZE",
    "TEST_IMAGES",
    "TEST_IMAGES_ENV",
    "AgentHost",
    "TestHost",
    "ToolFailed",
    "build_leftovers",
    "call",
    "connect",
    "free_port",
    "git",
    "make_repo",
    "mcp_post",
    "probe_results",
    "sse_messages",
    "until",
    "untrusted_body",
    "wait_for",
]

VENV_BIN = Path(sys.executable).parent
# The operator setting that lets tenants run the images tests build locally (conftest's hello_image).
TEST_IMAGES = ["ah-test/*"]
TEST_IMAGES_ENV = {"AGENTHOST_IMAGE_ALLOW": json.dumps(TEST_IMAGES)}

# Run inside a workload (python3 EGRESS_PROBE LABEL=HOST:PORT ...): one TCP connection per target, all at
# once, 3 s at most each; HOST 'gateway' is the workload's default gateway, i.e. the host itself. Prints one
# line per target: "probe LABEL reached LAST-LINE-OF-ANSWER" or "probe LABEL blocked ERROR".
EGRESS_PROBE = """
import socket, sys, threading
out = threading.Lock()
def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(bytes.fromhex(fields[2])[::-1])
    return "no-default-route"
def say(*words):
    with out:
        sys.stdout.write(" ".join(words) + "\\n")
        sys.stdout.flush()
def probe(target):
    label, _, address = target.partition("=")
    host, _, port = address.rpartition(":")
    host = gateway() if host == "gateway" else host
    try:
        with socket.create_connection((host, int(port)), timeout=3) as conn:
            conn.settimeout(3)
            conn.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            data = b""
            try:
                while len(data) < 65536 and (chunk := conn.recv(4096)):
                    data += chunk
            except OSError:
                pass
        answer = data.decode(errors="replace").strip().splitlines()[-1:]
        say("probe", label, "reached", " ".join(answer) or "(connected)")
    except OSError as exc:
        say("probe", label, "blocked", type(exc).__name__)
threads = [threading.Thread(target=probe, args=(t,)) for t in sys.argv[1:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""
_PROBE_LINE = re.compile(r"^probe (\S+) (reached|blocked)\b(.*)$", re.MULTILINE)


class ToolFailed(Exception):
    """A tool error, read from the result's structuredContent: ``code``, ``hint``, ``retry_after_s``, the
    whole object as ``error``, and ``message`` as the text shows it (the message, then ``(hint: ...)``)."""

    def __init__(self, tool: str, error: dict[str, Any]) -> None:
        self.code: str = error["code"]
        self.hint: str = error["hint"]
        self.retry_after_s: float | None = error.get("retry_after_s")
        self.error = error
        self.message = f"{error['message']} (hint: {self.hint})"
        super().__init__(f"{tool}: [{self.code}] {self.message}")


def build_leftovers(client: docker.DockerClient, marker: str) -> list[str]:
    """Containers and images (intermediate ones too) whose env carries ``marker``: what a build left behind.

    Other tests' containers and images come and go meanwhile: one gone between listing and inspecting is skipped.
    """
    found = []
    for summary in client.api.containers(all=True):
        try:
            env = client.api.inspect_container(summary["Id"])["Config"].get("Env")
        except docker.errors.NotFound:
            continue
        if marker in json.dumps(env):
            found.append(summary["Id"][:12])
    for image in client.api.images(all=True, quiet=True):
        try:
            env = client.api.inspect_image(image)["Config"].get("Env")
        except docker.errors.NotFound:
            continue
        if marker in json.dumps(env):
            found.append(image)
    return found


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


@dataclass(frozen=True)
class TestHost:
    """The test host (the ``test_host`` fixture): addresses in a network namespace the tests made, each
    serving 'agenthost-test-host IP:PORT' on every port in ``ports``."""

    internet: str  # stands in for the internet: egress open and web reach it
    forbidden: dict[str, str]  # label -> an address no workload may reach, whatever its policy
    ports: tuple[int, ...] = (80, 8080)

    __test__ = False  # not a test class, despite its name


def probe_results(output: str) -> dict[str, str]:
    """EGRESS_PROBE's lines in ``output`` as {label: "reached ..." or "blocked ..."}."""
    return {m.group(1): f"{m.group(2)}{m.group(3)}" for m in _PROBE_LINE.finditer(output)}


def untrusted_body(text: str) -> str:
    """What a workload wrote, without the untrusted-data boundary around it."""
    return text.split("\n", 1)[1].rsplit("\n", 1)[0] if text else ""


@dataclass
class AgentHost:
    """One data dir for the session, an admin key, tenants made on demand, and a lazily started HTTP server."""

    data_dir: Path
    admin_key: str = ""
    tenants: dict[str, str] = field(default_factory=dict)  # name -> key
    tenant_ids: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra AGENTHOST_* settings for every process
    cluster: Cluster | None = None  # the three-node test cluster it runs on, if it does
    # Where its SSH gateway listens: a free port on 127.0.0.1 of its own (unless env sets AGENTHOST_SSH_PORT).
    ssh_port: int = field(default_factory=lambda: free_port())
    _server: subprocess.Popen[bytes] | None = None
    _url: str | None = None

    @property
    def settings(self) -> Settings:
        """The settings its processes run with. From the environment, pydantic-settings reads complex values
        (lists, objects) as JSON; given as arguments they must be decoded first."""
        env = {**self._ssh_env, **self.env}
        values = {
            k[10:].lower(): json.loads(v) if v[:1] in "[{" else v for k, v in env.items() if k.startswith("AGENTHOST_")
        }
        return Settings(data_dir=self.data_dir, **values)

    @property
    def platform(self) -> str:
        """Where its workloads run: "docker", "nomad" (the dev agent) or "cluster" (the three-node cluster)."""
        return "cluster" if self.cluster is not None else self.settings.backend

    @property
    def _ssh_env(self) -> dict[str, str]:
        return {"AGENTHOST_SSH_BIND": "127.0.0.1", "AGENTHOST_SSH_PORT": str(self.ssh_port)}

    def process_env(self, key: str | None = None) -> dict[str, str]:
        # Every toolset, unless a test chooses: tests of a feature call its tools whatever the default offers.
        env = {
            **os.environ,
            "AGENTHOST_TOOLSETS": "all",
            **self._ssh_env,
            **self.env,
            "AGENTHOST_DATA_DIR": str(self.data_dir),
        }
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
        out = json.loads(self.cli("init", "--json"))
        self.admin_key = out["admin_key"]
        (admin,) = json.loads(self.cli("tenant", "list", "--json"))
        self.tenant_ids["admin"] = admin["id"]

    def tenant(self, name: str) -> str:
        """The key of tenant ``name``, created on first use with `agenthost tenant create`."""
        if name not in self.tenants:
            out = json.loads(self.cli("tenant", "create", name, "--json"))
            self.tenant_ids[name] = out["tenant"]["id"]
            self.tenants[name] = out["key"]
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

    @property
    def server_pid(self) -> int:
        """The pid of `agenthost serve` (started on first use)."""
        assert self.url and self._server is not None
        return self._server.pid

    def server_state(self) -> str:
        """Whether `agenthost serve` runs, for a failed test's report."""
        if self._server is None:
            return "not running: never started, or killed by the test"
        code = self._server.poll()
        return "running" if code is None else f"exited with status {code}"

    def kill_server(self) -> None:
        """SIGKILL `agenthost serve` (a crash: no chance to clean up); the next use of ``url`` starts a new one."""
        assert self._server is not None, "no server is running"
        self._server.kill()
        self._server.wait(10)
        self._server, self._url = None, None

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                self._server.kill()

    @property
    def instance(self) -> str:
        """The platform's instance label (derived from the data dir's master key)."""
        return instance_id((self.data_dir / "master.key").read_bytes())

    def cleanup_engine(self) -> None:
        """Remove whatever this session's platform left in Docker (a test that failed half-way, the warm pool, the
        images its tenants built)."""
        client = docker.from_env(version="auto")
        for label in [f"agenthost.tenant={tid}" for tid in self.tenant_ids.values()] + [
            f"agenthost.instance={self.instance}"
        ]:
            for c in client.containers.list(ignore_removed=True, all=True, filters={"label": label}):
                c.remove(force=True)
            for v in client.volumes.list(filters={"label": label}):
                v.remove(force=True)
            for n in client.networks.list(filters={"label": label}):
                n.remove()
            for image in client.images.list(filters={"label": label}):
                client.images.remove(image.id, force=True)
        client.close()


@asynccontextmanager
async def connect(
    host: AgentHost,
    key: str,
    transport: str,
    session_ids: list[str] | None = None,
    toolsets: str | None = None,
    **client_kwargs: Any,
) -> AsyncIterator[Client]:
    """An MCP client session as `key`, over 'stdio' (spawning `agenthost mcp`) or 'http' (`agenthost serve`).

    Over http, ``session_ids`` collects the Mcp-Session-Id headers the server answers with (a client in
    ``mode="legacy"`` opens a session; the default mode speaks the sessionless 2026 protocol). ``toolsets``
    is what the session asks for: the X-AgentHost-Toolsets header over http, AGENTHOST_TOOLSETS over stdio."""
    if transport == "stdio":
        env = host.process_env(key)
        if toolsets is not None:
            env["AGENTHOST_TOOLSETS"] = toolsets
        params = StdioServerParameters(command=str(VENV_BIN / "agenthost"), args=["mcp"], env=env)
        async with Client(params, **client_kwargs) as client:
            yield client
    elif transport == "http":

        async def remember(response: httpx2.Response) -> None:
            sid = response.headers.get("mcp-session-id")
            if session_ids is not None and sid and sid not in session_ids:
                session_ids.append(sid)

        hooks = {"response": [remember]}
        headers = {"Authorization": f"Bearer {key}"}
        if toolsets is not None:
            headers["X-AgentHost-Toolsets"] = toolsets
        async with httpx2.AsyncClient(headers=headers, timeout=120, event_hooks=hooks) as http:
            async with Client(streamable_http_client(f"{host.url}/mcp", http_client=http), **client_kwargs) as client:
                yield client
    else:
        raise ValueError(transport)


def parse_error(tool: str, result: CallToolResult) -> ToolFailed:
    """The error of a failed call, from its structuredContent; the text and _meta must agree with it."""
    error = result.structured_content
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert isinstance(error, dict) and {"code", "message", "hint"} <= set(error), f"{tool}: unstructured error {text}"
    assert text.startswith(f"[{error['code']}] "), f"{tool}: the text does not start with the code: {text}"
    assert result.meta is not None and result.meta.get("agenthost/code") == error["code"], result.meta
    return ToolFailed(tool, error)


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


async def call_all(client: Client, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Make the calls at once over one session (independent work, as an agent may); their outputs in order."""
    results: list[dict[str, Any]] = [{} for _ in calls]

    async def one(i: int, tool: str, args: dict[str, Any]) -> None:
        results[i] = await call(client, tool, args)

    async with anyio.create_task_group() as tg:
        for i, (tool, args) in enumerate(calls):
            tg.start_soon(one, i, tool, args)
    return results


INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


def mcp_post(
    host: AgentHost,
    key: str,
    message: dict[str, Any] | bytes,
    session: str | None = None,
    method: str = "POST",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    """One raw streamable-HTTP request to /mcp (handshake era unless ``extra`` says otherwise), as a hostile
    client would send it."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    if session is not None:
        headers |= {"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}
    headers |= extra or {}
    content = message if isinstance(message, bytes) else json.dumps(message).encode()
    body = content if method == "POST" else None
    return httpx.request(method, f"{host.url}/mcp", content=body, headers=headers, timeout=30)


def sse_messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a streamable-HTTP answer (an SSE stream or one JSON body)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return [response.json()]
    return [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()
    ]
