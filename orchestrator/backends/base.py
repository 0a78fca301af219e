"""The backend protocol: Docker on one host and Nomad on a cluster, interchangeable.

Backends speak only these models. An engine's own ids and JSON never cross this
module; backends never read SQLite and never decide policy (the orchestrator
validates, picks runtimes and limits, and passes a complete ``WorkloadSpec``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from anyio.abc import ObjectReceiveStream
from pydantic import BaseModel, Field

from ..errors import NotSupported
from ..models import Egress, HealthCheck

__all__ = [
    "Backend",
    "BackendInfo",
    "Endpoint",
    "ExecResult",
    "ExecSpec",
    "SessionInput",
    "SessionSpec",
    "OnBytes",
    "LogLine",
    "NoPreparedExecs",
    "NoStagedUpdates",
    "NodeDrain",
    "NodeInfo",
    "NodeWorkload",
    "OnLayer",
    "OneShotResult",
    "OneShotSpec",
    "OnLog",
    "OnOutput",
    "VolumeSpec",
    "WorkloadHealth",
    "WorkloadKind",
    "WorkloadSpec",
    "WorkloadState",
    "WorkloadStatus",
]

WorkloadKind = Literal["service", "database", "sandbox", "build", "job"]
WorkloadState = Literal["pending", "running", "restarting", "exited", "missing"]
WorkloadHealth = Literal["pending", "healthy", "unhealthy"]
OnLog = Callable[[str], Awaitable[None]]
OnLayer = Callable[[str], Awaitable[None]]
OnOutput = Callable[[str, str], Awaitable[None]]  # (stream 'stdout' | 'stderr', new text) while a command runs
OnBytes = Callable[[str, bytes], Awaitable[None]]  # (stream 'stdout' | 'stderr', new bytes) of a session
# What a session's caller sends: stdin bytes, a new terminal size (columns, rows), or None for end of stdin.
SessionInput = bytes | tuple[int, int] | None


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
    health_check: HealthCheck | None = None
    init: bool = Field(False, description="a tiny init as pid 1 that reaps zombies (exec'd commands that were killed)")
    restart: Literal["on-failure", "never"] = "on-failure"
    max_restarts: int = 5
    labels: dict[str, str] = {}
    slot: Literal["next"] | None = Field(
        None, description="'next': start it beside the workload's current container (Backend.promote_workload)"
    )

    def spec_hash(self) -> str:
        # The slot is where the container runs, not what it runs: a promoted one matches the spec again.
        return hashlib.sha256(self.model_dump_json(exclude={"slot"}).encode()).hexdigest()[:16]


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
    rollout: str | None = Field(
        None,
        description="how ensure_workload rolled out the change it just made, where the engine tracks it (a Nomad "
        "deployment and its outcome); None on Docker, whose containers are replaced by agenthost itself",
    )
    # The node that holds its data when that node cannot run it (down, draining): it cannot move by itself.
    node_lost: str | None = None
    health: WorkloadHealth | None = Field(
        None,
        description="the engine's own verdict on the workload's health check, where it tracks one (Nomad: the "
        "allocation's health in its deployment, from Nomad's checks); None where agenthost probes it itself",
    )


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


@dataclass(frozen=True)
class ExecSpec:
    """One command to run in a workload."""

    argv: list[str]
    timeout_s: float = 60
    stdin: bytes | None = None
    env: dict[str, str] | None = None
    workdir: str | None = None
    # Each of stdout and stderr keeps at most this much (head and tail).
    max_output_bytes: int = 1024 * 1024
    # Gets new output while the command runs.
    on_output: OnOutput | None = None


class OneShotSpec(BaseModel):
    """The platform's own one-shot job (restic, for backups): runs once where its volume lives, then is removed.

    ``env`` holds secrets: it never enters the engine's job or container definition where the engine can avoid
    it (Nomad: the job's Variable, read by a template). ``binaries`` bind-mounts host files read-only (a tool
    the image lacks, such as the node's restic)."""

    id: str
    tenant_id: str
    image: str
    argv: list[str]
    env: dict[str, str] = {}
    volume: VolumeSpec | None = None
    binaries: dict[str, str] = Field(default_factory=dict, description="container path -> host path")
    network: Literal["none", "host"] = "none"
    cap_add: list[str] = []
    memory_mb: int = 256
    timeout_s: float = 3600
    labels: dict[str, str] = {}


class OneShotResult(BaseModel):
    exit_code: int | None = Field(description="None when it did not finish by its deadline (it was killed)")
    stdout: str = Field(description="the output's last 64 KiB")
    stderr: str
    node: str | None = Field(None, description="where it ran")


@dataclass(frozen=True)
class SessionSpec:
    """One interactive command in a workload (an SSH session): streamed both ways, no deadline of its own."""

    argv: list[str]
    tty: bool = False
    term: str | None = None  # TERM for a terminal session
    size: tuple[int, int] | None = None  # the terminal's (columns, rows) at the start


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


class NodeWorkload(BaseModel):
    id: str
    tenant: str
    kind: str
    name: str | None = None
    data_node: str | None = Field(None, description="the node that holds its data, which it cannot leave")
    error: str | None = Field(None, description="why its data did not move")


class NodeDrain(BaseModel):
    node: NodeInfo
    moved_to: dict[str, str] = Field(default_factory=dict, description="tenant -> the node it moved to")
    moved: list[NodeWorkload] = Field(default_factory=list, description="registered again on the tenant's new node")
    stranded: list[NodeWorkload] = Field(
        default_factory=list, description="held by their data on the drained node: restore a backup elsewhere"
    )
    data_moved: list[NodeWorkload] = Field(
        default_factory=list, description="databases whose data moved with their tenant, through its backup repository"
    )


class BackendInfo(BaseModel):
    name: str
    version: str
    data_root: Path | None = None
    details: dict[str, str] = {}


class NoStagedUpdates:
    """For a backend that cannot run a second container of a workload: redeploys replace it."""

    staged_updates = False

    async def promote_workload(self, workload_id: str) -> WorkloadStatus:
        raise NotSupported("this backend runs one container per workload", "redeploy it instead")


class NoPreparedExecs:
    """For a backend that starts every exec when its command comes."""

    async def prepare_exec(self, workload_id: str) -> str | None:
        return None

    async def discard_prepared_exec(self, workload_id: str) -> None:
        return None


@runtime_checkable
class Backend(Protocol):
    """What the orchestrator needs from an engine. Every method may raise ``BackendUnavailable``."""

    name: str
    # Whether ensure_workload takes a spec with slot "next" and promote_workload exists (zero-downtime updates).
    staged_updates: bool
    # Whether volume_path_or_mount is a directory on the control plane's host (Docker); elsewhere work on a
    # volume's files runs where the volume lives, through run_oneshot.
    local_volumes: bool

    async def info(self) -> BackendInfo: ...
    async def runtimes(self) -> set[str]: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def set_node_eligibility(self, node_id: str, eligible: bool) -> NodeInfo:
        """Raises: InvalidInput on a backend whose nodes cannot be drained (one Docker host)."""
        ...

    async def drain_node(self, node_id: str, deadline_s: int) -> NodeDrain:
        """Move the tenants on the node elsewhere, then drain it (what remains stops at the deadline).

        Raises: InvalidInput on a backend whose nodes cannot be drained (one Docker host)."""
        ...

    async def relocate_tenants(self) -> dict[str, int]:
        """Move tenants off nodes that are down or draining and remove the copies of released volumes that nodes
        which are back still hold (a reconciler pass); counts of what moved and was removed."""
        ...

    async def volumes_on(self, node_id: str) -> list[str]:
        """Names of the volumes whose data is on node ``node_id`` (none where volumes are not on nodes)."""
        ...

    async def release_volume(self, name: str, keep_copy: bool = False) -> str | None:
        """Forget the node of a volume whose node is lost, so that the next workload mounting it makes it
        afresh where it lands (before a restore there); the copy left on the lost node is removed once that node
        is back, or with ``keep_copy`` only once ``drop_copy`` says so. The lost node, or None when nothing was
        released."""
        ...

    async def reclaim_volume(self, name: str, node_id: str) -> None:
        """Undo ``release_volume(keep_copy=True)``: the volume lives on ``node_id`` again, with the copy kept there,
        and its tenant goes back to that node once it is ready; the copy placed elsewhere meanwhile is removed."""
        ...

    async def drop_copy(self, name: str, node_id: str) -> None:
        """The copy of volume ``name`` that ``release_volume(keep_copy=True)`` left on ``node_id`` is not needed
        any more: it is removed once that node is back."""
        ...

    async def image_exists(self, image: str) -> bool: ...

    async def ensure_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Create or replace (when the spec changed) and start; idempotent by ``spec.id``."""
        ...

    async def promote_workload(self, workload_id: str) -> WorkloadStatus:
        """The container started with slot "next" becomes the workload's own; the one it replaces keeps running
        as ``slot_id(workload_id, "old")`` until the caller removes it (its open connections drain meanwhile).

        Raises: NotFound when no "next" container exists; NotSupported where ``staged_updates`` is False."""
        ...

    async def stop_workload(self, workload_id: str, timeout_s: float = 10) -> None: ...
    async def start_workload(self, workload_id: str) -> WorkloadStatus: ...
    async def restart_workload(self, workload_id: str) -> WorkloadStatus: ...
    async def remove_workload(self, workload_id: str) -> bool: ...
    async def workload_status(self, workload_id: str) -> WorkloadStatus: ...

    async def watch_workload(self, workload_id: str, index: int, wait_s: float) -> tuple[WorkloadStatus, int]:
        """The status once it changed past ``index`` (0: at once), or after at most ``wait_s``; and the index
        to pass next. Nomad answers a blocking query; Docker, whose inspect is a local call, after a short
        pause."""
        ...

    async def list_workloads(self, labels: dict[str, str]) -> list[WorkloadStatus]: ...

    def logs(
        self, workload_id: str, tail: int = 200, since: datetime | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]: ...

    async def exec(self, workload_id: str, spec: ExecSpec) -> ExecResult:
        """Run ``spec.argv`` in a running workload, killing it and its children inside the workload at the
        deadline. Raises: InvalidInput when the workload is not running."""
        ...

    async def prepare_exec(self, workload_id: str) -> str | None:
        """Start an exec in a running workload ahead of its next command, so that command skips the engine's exec
        path (a warm sandbox's first command). Returns its key (the exec marker its command will carry), None when
        this backend does not prepare execs. Raises: InvalidInput when the workload is not running."""
        ...

    async def discard_prepared_exec(self, workload_id: str) -> None:
        """Give up every exec prepared in the workload, by whichever process of the data dir prepared it, before
        code the platform did not start may run there (an SSH session). Raises: InvalidInput when the workload
        is not running."""
        ...

    async def session(
        self, workload_id: str, spec: SessionSpec, stdin: ObjectReceiveStream[SessionInput], on_output: OnBytes
    ) -> int | None:
        """Run ``spec.argv`` in a running workload as its user, with ``stdin`` streamed in (and terminal size
        changes passed on) and output handed to ``on_output`` as it comes, until the command exits: its exit
        status, or None when the session was lost (the workload stopped or restarted). Cancelled, the
        command and everything it started are killed inside the workload.

        Raises: InvalidInput when the workload is not running."""
        ...

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None: ...
    async def remove_volume(self, name: str) -> bool: ...
    async def volume_path_or_mount(self, name: str) -> str: ...
    async def list_volumes(self, labels: dict[str, str]) -> list[str]: ...

    async def run_oneshot(self, spec: OneShotSpec) -> OneShotResult:
        """Run ``spec`` once to its end, on the node that holds ``spec.volume`` (any node when it has none or
        it was not placed yet: it is placed there then), and remove it. Killed at ``spec.timeout_s``.

        Raises: NotFound when the volume is not this platform's; BackendUnavailable when its node is down."""
        ...

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None: ...
    async def remove_network(self, name: str) -> bool:
        """Remove a tenant network; False when it does not exist or a running workload is still on it."""
        ...

    async def list_networks(self, labels: dict[str, str]) -> list[str]:
        """Names of the tenant networks of this platform the control plane can remove (with ``labels``)."""
        ...

    async def put_secret(self, path: str, values: dict[str, str]) -> None: ...
    async def delete_secret(self, path: str) -> None: ...

    async def close(self) -> None: ...
