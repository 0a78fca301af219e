"""The backend protocol: Docker on one host and Nomad on a cluster, interchangeable.

Backends speak only these models. An engine's own ids and JSON never cross this
module; backends never read SQLite and never decide policy (the orchestrator
validates, picks runtimes and limits, and passes a complete ``WorkloadSpec``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ..models import Egress, HealthCheck

__all__ = [
    "Backend",
    "Builder",
    "BackendInfo",
    "Endpoint",
    "ExecResult",
    "ImageRef",
    "LogLine",
    "NodeInfo",
    "OnLayer",
    "OnLog",
    "OnOutput",
    "VolumeSpec",
    "WorkloadKind",
    "WorkloadSpec",
    "WorkloadState",
    "WorkloadStatus",
    "LABEL_PREFIX",
]

LABEL_PREFIX = "agenthost"
WorkloadKind = Literal["service", "database", "sandbox", "build", "sidecar", "job"]
WorkloadState = Literal["pending", "running", "restarting", "exited", "missing"]
OnLog = Callable[[str], Awaitable[None]]
OnLayer = Callable[[str], Awaitable[None]]
OnOutput = Callable[[str, str], Awaitable[None]]  # (stream 'stdout' | 'stderr', new text) while a command runs


class VolumeSpec(BaseModel):
    name: str = Field(description="engine-level volume name, already namespaced by tenant")
    path: str
    read_only: bool = False


class WorkloadSpec(BaseModel):
    id: str
    kind: WorkloadKind
    tenant_id: str
    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = {}
    ports: list[int] = []
    volumes: list[VolumeSpec] = []
    memory_mb: int
    cpus: float
    pids_limit: int = 256
    runtime: str
    read_only_rootfs: bool = True
    tmpfs: dict[str, int] = Field(
        default_factory=lambda: {"/tmp": 64, "/run": 16, "/var/tmp": 16}, description="path -> size in MiB"
    )
    cap_add: list[str] = []
    user: str | None = None
    workdir: str | None = None
    egress: Egress = "open"
    network: str | None = Field(None, description="the tenant's private network")
    network_aliases: list[str] = []
    share_network_with: str | None = Field(None, description="workload id whose network namespace to join")
    health_check: HealthCheck | None = None
    init: bool = Field(False, description="a tiny init as pid 1 that reaps zombies (exec'd commands that were killed)")
    restart: Literal["on-failure", "never"] = "on-failure"
    max_restarts: int = 5
    labels: dict[str, str] = {}

    def spec_hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class Endpoint(BaseModel):
    host: str
    port: int


class WorkloadStatus(BaseModel):
    id: str
    state: WorkloadState
    endpoints: dict[int, Endpoint] = Field(default_factory=dict, description="container port -> published endpoint")
    restarts: int = 0
    exit_code: int | None = None
    error: str | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    spec_hash: str | None = None
    labels: dict[str, str] = {}


class LogLine(BaseModel):
    ts: datetime | None = None
    stream: Literal["stdout", "stderr"] = "stdout"
    text: str


class ExecResult(BaseModel):
    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool
    duration_ms: int


class ImageRef(BaseModel):
    tag: str
    digest: str | None = None
    size_bytes: int | None = None
    ports: list[int] = Field(default_factory=list, description="TCP ports the image exposes")


class NodeInfo(BaseModel):
    id: str
    name: str
    address: str
    status: str
    eligible: bool
    cpus: float
    memory_mb: int
    runtimes: list[str] = []
    drivers: list[str] = []
    datacenter: str | None = None
    node_pool: str | None = None
    draining: bool = False


class BackendInfo(BaseModel):
    name: str
    version: str
    data_root: Path | None = None
    details: dict[str, str] = {}


@runtime_checkable
class Backend(Protocol):
    """What the orchestrator needs from an engine. Every method may raise ``BackendUnavailable``."""

    name: str

    async def info(self) -> BackendInfo: ...
    async def runtimes(self) -> set[str]: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        """Raises: InvalidInput on a backend whose nodes cannot be drained (one Docker host)."""
        ...

    async def image_exists(self, image: str) -> bool: ...

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Create or replace (when the spec changed) and start; idempotent by ``spec.id``."""
        ...

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None: ...
    async def start_workload(self, workload_id: str) -> WorkloadStatus: ...
    async def restart_workload(self, workload_id: str) -> WorkloadStatus: ...
    async def remove_workload(self, workload_id: str) -> bool: ...
    async def workload_status(self, workload_id: str) -> WorkloadStatus: ...
    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]: ...

    def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]: ...

    async def exec(
        self,
        workload_id: str,
        argv: list[str],
        timeout_s: float = 60,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        max_output_bytes: int = 1024 * 1024,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        """Run argv in a running workload, killing it and its children inside the workload at the deadline.

        Each of stdout and stderr keeps at most ``max_output_bytes`` (head and tail); ``on_output`` gets
        new output while the command runs. Raises: InvalidInput when the workload is not running.
        """
        ...

    async def build_image(
        self, context: Path, dockerfile: str, tag: str, on_log: OnLog, memory_mb: int, cpus: float, timeout_s: float
    ) -> ImageRef: ...

    async def remove_image(self, tag: str) -> None: ...

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None: ...
    async def remove_volume(self, name: str) -> bool: ...
    async def volume_path_or_mount(self, name: str) -> str: ...
    async def list_volumes(self, labels: dict[str, str]) -> list[str]: ...

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None: ...
    async def remove_network(self, name: str) -> bool: ...

    async def put_secret(self, path: str, values: dict[str, str]) -> None: ...
    async def delete_secret(self, path: str) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Builder(Protocol):
    """Builds images from a context and pushes them to a registry. The Docker backend is one; on a
    Nomad cluster the control-plane host's Docker engine builds, and clients pull from the registry."""

    async def image_exists(self, image: str) -> bool: ...

    async def build_image(
        self,
        context: Path,
        dockerfile: str,
        tag: str,
        on_log: OnLog,
        memory_mb: int,
        cpus: float,
        timeout_s: float,
        network: Egress = "open",
        labels: dict[str, str] | None = None,
        on_layer: OnLayer | None = None,
    ) -> ImageRef:
        """Build ``tag``; ``dockerfile`` is relative to ``context`` or an absolute path outside it.

        Layers are reported to ``on_layer`` as they are committed, and removed again when the build
        fails or is cancelled. Raises: BuildFailed (with the engine's message, or past ``timeout_s``).
        """
        ...

    async def push_image(self, tag: str, on_log: OnLog) -> str | None:
        """Push to the registry ``tag`` names; returns the digest. Raises: BuildFailed."""
        ...

    async def remove_image(self, tag: str) -> None: ...

    async def remove_layers(self, layers: list[str]) -> list[str]:
        """Remove untagged build layers (those a build that died left behind); returns those removed."""
        ...

    async def close(self) -> None: ...
