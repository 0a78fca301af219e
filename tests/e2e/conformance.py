"""Helpers of the conformance suite (test_backend_conformance*.py), the same calls on Docker and Nomad, and
of the test modules that share them (builds, SSH, sandboxes): one definition each.

The ``host``, ``product_backend`` and ``backend`` fixtures live in conftest.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import docker
import httpx
from docker.models.containers import Container
from mcp import Client

from orchestrator.backends.base import Backend, WorkloadStatus

from .harness import AgentHost, call, free_port, untrusted_body
from .nomad_agent import nomad_get
from .nomad_cluster import cluster_get, node_engine, registry_client

__all__ = [
    "HTTP_VIA_LOCALHOST",
    "OpenSsh",
    "REGISTRY",
    "SERVER_PY",
    "answers",
    "body",
    "container_of",
    "nomad_read",
    "pool_ready",
    "registry_api",
    "service_address",
    "sh",
    "state",
    "tenant",
]

REGISTRY = "127.0.0.1:5000"  # builds push here (infra/registry.sh); the cluster has its own (registry_api)
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
    """A fresh tenant per test and platform (the hosts of a session share nothing but the engines)."""
    return host.tenant(f"{what}-{host.platform}")


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


def nomad_read(host: AgentHost, path: str, **params: Any) -> Any:
    """GET ``path`` of the Nomad API the host's platform runs on (the dev agent, or the cluster as its operator)."""
    if host.cluster is not None:
        return cluster_get(host.cluster, path, **params)
    return nomad_get(path, **params)


def _running_alloc(host: AgentHost, workload_id: str) -> dict[str, Any]:
    allocs = nomad_read(host, "allocations", filter=f'JobID == "ah-{workload_id}" and ClientStatus == "running"')
    assert len(allocs) == 1, allocs
    return allocs[0]  # type: ignore[no-any-return]


def container_of(host: AgentHost, client: docker.DockerClient, workload_id: str) -> Container:
    """The engine's container of a running workload: ``ah-<id>`` on Docker, the job's main task on Nomad; on the
    cluster, as the dockerd of the node it runs on holds it (its ``client`` is that engine's)."""
    if host.platform == "docker":
        return client.containers.get(f"ah-{workload_id}")
    alloc = _running_alloc(host, workload_id)
    if host.cluster is not None:
        client = node_engine(host.cluster, alloc["NodeName"])
    return client.containers.get(f"main-{alloc['ID']}")


def service_address(host: AgentHost, workload_id: str) -> str:
    """The address a running workload's ports are published on: this host's loopback, or on the cluster the
    address of its node."""
    if host.cluster is None:
        return "127.0.0.1"
    return host.cluster.nodes[_running_alloc(host, workload_id)["NodeName"]][0]


def registry_api(host: AgentHost) -> httpx.Client:
    """A client of the v2 API of the registry the host's builds are pushed to (on the cluster, with its login)."""
    if host.cluster is not None:
        return registry_client(host.cluster)
    return httpx.Client(base_url=f"http://{REGISTRY}/v2/", timeout=5)


class OpenSsh:
    """The OpenSSH client (``ssh``) with one key, trusting only the host key ssh_info gave (``info``)."""

    def __init__(self, folder: Path, info: dict[str, Any], key: asyncssh.SSHKey) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.info = info
        self.key_file = folder / f"id-{uuid.uuid4().hex[:8]}"
        self.key_file.write_bytes(key.export_private_key())
        self.key_file.chmod(0o600)
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(info["known_hosts_line"] + "\n")

    def argv(self, *args: str, user: str | None = None, tty: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
        options = {
            "BatchMode": "yes",
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "ConnectTimeout": "20",
            "LogLevel": "ERROR",
        }
        return [
            "ssh",
            "-F",
            "/dev/null",
            *(f"-o{k}={v}" for k, v in options.items()),
            "-i",
            str(self.key_file),
            "-p",
            str(self.info["port"]),
            "-tt" if tty else "-T",
            *extra,
            f"{user or self.info['user']}@{self.info['host']}",
            *args,
        ]

    async def run(
        self, *command: str, user: str | None = None, tty: bool = False, stdin: bytes = b"", timeout: float = 90
    ) -> subprocess.CompletedProcess[bytes]:
        with anyio.fail_after(timeout):
            return await anyio.run_process(self.argv(*command, user=user, tty=tty), input=stdin, check=False)

    async def sftp(self, batch: str, timeout: float = 90) -> subprocess.CompletedProcess[bytes]:
        """``sftp -b -`` with the batch on stdin (it stops at the first failing command)."""
        options = ["-P" if a == "-p" else a for a in self.argv()[1:-2]]  # ssh's options, less -T and the target
        argv = ["sftp", *options, "-b", "-", f"{self.info['user']}@{self.info['host']}"]
        with anyio.fail_after(timeout):
            return await anyio.run_process(argv, input=batch.encode(), check=False)

    @asynccontextmanager
    async def forward(self, dest: str) -> AsyncIterator[int]:
        """``ssh -N -L <a free port>:<dest>`` for as long as the block runs; yields the local port."""
        local = free_port()
        argv = self.argv(extra=("-N", "-oExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:{dest}"))
        async with await anyio.open_process(argv) as proc:
            with anyio.fail_after(30):
                while True:
                    try:
                        await (await anyio.connect_tcp("127.0.0.1", local)).aclose()
                        break
                    except OSError:
                        assert proc.returncode is None, "ssh -L exited"
                        await anyio.sleep(0.1)
            try:
                yield local
            finally:
                proc.terminate()

    async def out(self, command: str, **kw: Any) -> str:
        """stdout of a command that must succeed."""
        done = await self.run(command, **kw)
        assert done.returncode == 0, (command, done.returncode, done.stdout, done.stderr)
        return done.stdout.decode()
