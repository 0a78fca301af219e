"""Helpers of the conformance suite (test_backend_conformance*.py), the same calls on Docker and Nomad, and
of the test modules that share them (builds, SSH, sandboxes): one definition each.

The ``host``, ``product_backend`` and ``backend`` fixtures live in conftest.py.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import asyncssh
import docker
import httpx
from docker.models.containers import Container
from mcp import Client

from orchestrator.backends.base import Backend, WorkloadStatus

from .harness import AgentHost, call, untrusted_body
from .nomad_agent import nomad_get

__all__ = [
    "HTTP_VIA_LOCALHOST",
    "REGISTRY",
    "SERVER_PY",
    "answers",
    "body",
    "container_of",
    "pool_ready",
    "sh",
    "ssh_run",
    "state",
    "tenant",
]

REGISTRY = "127.0.0.1:5000"  # builds push here (infra/registry.sh)
# A service built from git: answers GET with $BODY (default: the text put in place of {body}).
SERVER_PY = """
import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("BODY", "{body}").encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), H).serve_forever()
"""
# Run in a workload (over exec or SSH): GET / of the service on its own port 8000, with no curl in the image.
HTTP_VIA_LOCALHOST = "exec 3<>/dev/tcp/127.0.0.1/8000; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
# The conformance suite's short name for harness.untrusted_body.
body = untrusted_body


def tenant(host: AgentHost, what: str) -> str:
    """A fresh tenant per test and backend (both hosts of a session share nothing but the engine)."""
    return host.tenant(f"{what}-{host.settings.backend}")


async def sh(client: Client, script: str, **target: Any) -> tuple[int | None, str, str]:
    """The exec tool with a shell string: (exit code, stdout, stderr) without the boundary."""
    run = await call(client, "exec", {"command": script, "timeout_s": 120, **target})
    return run["exit_code"], body(run["stdout"]), body(run["stderr"])


async def answers(url: str, expected: str | None = None, timeout: float = 60) -> str:
    with anyio.fail_after(timeout):
        while True:
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    text = (await client.get(url)).text
                if expected is None or text == expected:
                    return text
            except httpx.HTTPError:
                pass
            await anyio.sleep(0.2)


async def state(backend: Backend, workload_id: str, wanted: str, timeout: float = 90) -> WorkloadStatus:
    st = await backend.workload_status(workload_id)
    with anyio.move_on_after(timeout):
        while (st := await backend.workload_status(workload_id)).state != wanted:
            await anyio.sleep(0.2)
    assert st.state == wanted, f"{workload_id} did not reach {wanted} in {timeout} s: {st}"
    return st


async def pool_ready(host: AgentHost, want: int = 1, timeout: float = 180) -> None:
    """Until the platform's warm pool holds ``want`` ready containers (it warms once a sandbox was asked for)."""
    with anyio.fail_after(timeout):
        while True:
            db = sqlite3.connect(host.data_dir / "agenthost.db")
            try:
                (ready,) = db.execute("SELECT COUNT(*) FROM sandbox_pool WHERE state = 'ready'").fetchone()
            finally:
                db.close()
            if ready >= want:
                return
            await anyio.sleep(0.5)


def container_of(host: AgentHost, client: docker.DockerClient, workload_id: str) -> Container:
    """The engine's container of a running workload: ``ah-<id>`` on Docker, the job's main task on Nomad."""
    if host.settings.backend == "docker":
        return client.containers.get(f"ah-{workload_id}")
    allocs = nomad_get("allocations", filter=f'JobID == "ah-{workload_id}" and ClientStatus == "running"')
    assert len(allocs) == 1, allocs
    return client.containers.get(f"main-{allocs[0]['ID']}")


async def ssh_run(info: dict[str, Any], key: asyncssh.SSHKey, command: str, user: str = "app") -> tuple[str, str]:
    """Run a command over SSH (``info`` from ssh_info); returns (stdout, server host key fingerprint)."""
    async with asyncssh.connect(
        info["host"],
        port=info["port"],
        username=user,
        client_keys=[key],
        known_hosts=None,
        agent_path=None,
        preferred_auth="publickey",
        connect_timeout=20,
    ) as conn:
        fp = conn.get_server_host_key().get_fingerprint("sha256")
        result = await conn.run(command, timeout=30)
        assert result.exit_status == 0, (command, result.exit_status, result.stdout, result.stderr)
        return str(result.stdout), fp
