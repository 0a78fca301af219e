"""The platform's one-shot jobs on Docker (``Backend.run_oneshot``): a container of its own, run once and removed.

On one host the volume is local, so the container simply mounts it. Its env is in the container's
definition, which only the host's root (the Docker socket) can read; the container exists only while
the job runs.
"""

from __future__ import annotations

import time

import anyio
import docker.errors
from docker.types import Mount

from ...labels import L_ID, L_KIND, L_TENANT, container_name
from ..base import OneShotResult, OneShotSpec
from .engine import DockerEngine

__all__ = ["run_oneshot"]

_TAIL_BYTES = 64 * 1024
_POLL_S = 0.2


def _start(engine: DockerEngine, spec: OneShotSpec) -> str:
    client = engine.client()
    name = container_name(spec.id)
    mounts = [Mount(target=path, source=host, type="bind", read_only=True) for path, host in spec.binaries.items()]
    if spec.volume is not None:
        mounts.append(Mount(target=spec.volume.path, source=spec.volume.name, type="volume"))
    labels = {**engine.own, **spec.labels, L_ID: spec.id, L_KIND: "job", L_TENANT: spec.tenant_id}
    container = client.containers.create(
        spec.image,
        command=spec.argv,
        name=name,
        environment={"TMPDIR": "/tmp", "HOME": "/tmp", **spec.env},
        mounts=mounts,
        tmpfs={"/tmp": "size=512m"},
        network_mode=spec.network,
        user="root",
        runtime="runc",
        read_only=True,
        cap_drop=["ALL"],
        cap_add=[c.upper() for c in spec.cap_add],
        security_opt=["no-new-privileges"],
        pids_limit=64,
        mem_limit=f"{spec.memory_mb + 512}m",  # the tmpfs counts against it
        labels=labels,
    )
    container.start()
    return str(container.id)


def _state(engine: DockerEngine, cid: str) -> tuple[bool, int | None]:
    state = engine.client().containers.get(cid).attrs["State"]
    return state["Status"] in ("exited", "dead"), state.get("ExitCode")


def _outcome(engine: DockerEngine, cid: str, code: int | None) -> OneShotResult:
    container = engine.client().containers.get(cid)

    def tail(stdout: bool) -> str:
        raw: bytes = container.logs(stdout=stdout, stderr=not stdout)
        return raw[-_TAIL_BYTES:].decode("utf-8", "replace")

    return OneShotResult(exit_code=code, stdout=tail(True), stderr=tail(False), node=None)


def _remove(engine: DockerEngine, cid: str) -> None:
    try:
        engine.client().containers.get(cid).remove(force=True)
    except docker.errors.NotFound:
        pass


async def run_oneshot(engine: DockerEngine, spec: OneShotSpec) -> OneShotResult:
    """Backend.run_oneshot on Docker. Raises: ImageNotFound, BackendUnavailable."""
    cid = await engine.run(f"start job {spec.id}", _start, engine, spec)
    try:
        deadline = time.monotonic() + spec.timeout_s
        done, code = await engine.run(f"inspect job {spec.id}", _state, engine, cid)
        while not done and time.monotonic() < deadline:
            await anyio.sleep(_POLL_S)
            done, code = await engine.run(f"inspect job {spec.id}", _state, engine, cid)
        if not done:
            await engine.run(f"stop job {spec.id}", lambda: engine.client().containers.get(cid).kill())
            code = None
        return await engine.run(f"read job {spec.id}", _outcome, engine, cid, code)
    finally:
        with anyio.CancelScope(shield=True):
            await engine.run(f"remove job {spec.id}", _remove, engine, cid)
