"""Builds on a Nomad cluster: a batch job holds a node's Docker socket; the context streams in over alloc exec.

The build runs on the node's engine with the same memory/CPU limits and log stream as the
Docker backend's ``docker build``; a tag that names a registry (``host:port/name:tag``) is
pushed there so that every client node can pull the image.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import AgentHostError, BuildFailed, InvalidInput
from .base import ImageRef, OnLog
from .nomad_allocs import await_placement
from .nomad_exec import run_in_alloc
from .nomad_jobs import L_ID, L_INSTANCE, L_KIND, L_MANAGED, NOMAD_DIR, check_reference, job_id

if TYPE_CHECKING:
    from .nomad import NomadBackend

__all__ = ["build_on_cluster"]

_MAX_CONTEXT = 512 * 1024 * 1024
# Runs inside the builder: the Engine API over the mounted socket, the context tar on stdin.
_SCRIPT = r"""
import base64, http.client, json, socket, sys, urllib.parse
class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")
def relay(resp):
    ok = True
    for raw in resp:
        for part in raw.decode("utf-8", "replace").splitlines():
            if part.strip():
                sys.stdout.write(part + "\n"); sys.stdout.flush()
                try:
                    ok = ok and "error" not in json.loads(part)
                except ValueError:
                    pass
    return ok
tag, dockerfile, memory, cpushares, push = sys.argv[1:6]
body = sys.stdin.buffer.read()
q = urllib.parse.urlencode({"t": tag, "dockerfile": dockerfile, "rm": 1, "forcerm": 1, "pull": 0,
                            "memory": memory, "memswap": memory, "cpushares": cpushares})
c = Engine("engine", timeout=None)
c.request("POST", "/build?" + q, body=body, headers={"Content-Type": "application/x-tar"})
r = c.getresponse()
if r.status != 200:
    print(json.dumps({"error": r.read().decode("utf-8", "replace")})); sys.exit(1)
if not relay(r):
    sys.exit(1)
c = Engine("engine", timeout=60)
c.request("GET", "/images/" + urllib.parse.quote(tag, safe="") + "/json")
info = json.loads(c.getresponse().read())
if push == "1":
    repo, _, ref = tag.rpartition(":")
    c = Engine("engine", timeout=None)
    c.request("POST", "/images/" + urllib.parse.quote(repo, safe="") + "/push?tag=" + urllib.parse.quote(ref),
              headers={"X-Registry-Auth": base64.b64encode(b"{}").decode()})
    r = c.getresponse()
    if r.status != 200 or not relay(r):
        print(json.dumps({"error": "push failed: " + str(r.status)})); sys.exit(1)
print(json.dumps({"agenthost_image": {"id": info.get("Id"), "size": info.get("Size")}}))
"""


def _tar(context: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(context), arcname=".")
    if buffer.tell() > _MAX_CONTEXT:
        raise InvalidInput("the build context is larger than 512 MiB", "add a .dockerignore or trim the repository")
    return buffer.getvalue()


def _has_registry(tag: str) -> bool:
    first, sep, _ = tag.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def _builder_job(backend: NomadBackend, workload_id: str, lifetime_s: int) -> dict[str, Any]:
    variables = {
        "image": backend.builder_image,
        "datacenters": backend.datacenters,
        "node_pool": backend.node_pool,
        "lifetime_s": lifetime_s,
    }
    job: dict[str, Any] = backend.api.post(
        "jobs",
        "parse",
        body={"JobHCL": (NOMAD_DIR / "build.nomad.hcl").read_text(), "Variables": json.dumps(variables)},
    )
    jid = job_id(workload_id)
    job.update({"ID": jid, "Name": jid, "Namespace": backend.api.namespace})
    # Kind "job": the platform's own short-lived work, which the reconciler never takes for an orphan.
    job["Meta"] = {
        L_MANAGED: "true",
        L_INSTANCE: backend.instance,
        L_ID: workload_id,
        L_KIND: "job",
        "agenthost.builder": "true",
    }
    return job


async def build_on_cluster(
    backend: NomadBackend,
    context: Path,
    dockerfile: str,
    tag: str,
    on_log: OnLog,
    memory_mb: int,
    cpus: float,
    timeout_s: float,
) -> ImageRef:
    """Raises: BuildFailed with the engine's message, or when the time limit passes."""
    check_reference(tag)
    body = await anyio.to_thread.run_sync(_tar, context)
    workload_id = "bld_" + uuid.uuid4().hex[:12]
    jid = job_id(workload_id)
    started = time.monotonic()
    try:

        def submit() -> None:
            eval_id, version = backend._register_sync(_builder_job(backend, workload_id, int(timeout_s) + 120))
            await_placement(backend.api, jid, eval_id, version, None)

        await backend._run(f"start builder for {tag}", submit)
        alloc = await backend._current_alloc(workload_id)
        pending = b""
        errors: list[str] = []
        result: dict[str, Any] = {}

        async def on_output(stream: str, chunk: bytes) -> None:
            nonlocal pending
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    await on_log(raw.decode("utf-8", "replace"))
                    continue
                if "agenthost_image" in msg:
                    result.update(msg["agenthost_image"])
                elif "error" in msg:
                    errors.append(str(msg["error"]).strip())
                elif text := msg.get("stream") or msg.get("status"):
                    await on_log(str(text).rstrip("\n"))

        argv = [
            "python3",
            "-c",
            _SCRIPT,
            tag,
            dockerfile,
            str(memory_mb * 1024 * 1024),
            str(max(2, int(cpus * 1024))),
            "1" if _has_registry(tag) else "0",
        ]
        remaining = max(1.0, timeout_s - (time.monotonic() - started))
        outcome = await run_in_alloc(
            backend._exec_url(alloc["ID"]),
            backend.api.token,
            argv,
            timeout_s=remaining,
            stdin=body,
            on_output=on_output,
        )
        if outcome.timed_out:
            raise BuildFailed(f"build exceeded its time limit of {int(timeout_s)} s")
        if outcome.exit_code != 0 or errors:
            raise BuildFailed(errors[-1] if errors else (outcome.stderr.strip()[-2000:] or "build failed"))
        if not result.get("id"):
            raise AgentHostError("the builder finished without an image id")
        return ImageRef(tag=tag, digest=str(result["id"]), size_bytes=int(result.get("size") or 0))
    finally:
        with anyio.CancelScope(shield=True):
            await backend.remove_workload(workload_id)
