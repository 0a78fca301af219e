"""What confines a ``docker build`` beyond the build API's own parameters: runtime, processes, disk.

- Runtime: step containers run under the engine's default runtime (the build API cannot name one).
  Under runsc they are gVisor sandboxes; under anything else the build log and platform_status say
  what is not isolated.
- Processes: a per-build pids cgroup as the steps' cgroup parent (``build_cgroups``).
- Disk: the writable layer of the running step (``SizeRw``) plus the layers the build committed,
  measured every ``DISK_POLL_S`` while the build runs and once when it ends. This is a watch, not a
  quota: a step can overshoot by what it writes in one interval (a ``fallocate`` of any size is one
  write), and only a storage quota on the engine's data root would make it a hard limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from ...errors import BuildFailed
from ..building import BuildIsolation
from .cgroups import unsupported_reason

__all__ = ["DISK_POLL_S", "DiskMeter", "EngineFacts", "disk_exceeded", "engine_facts", "failure_hint", "isolation"]

DISK_POLL_S = 2.0
_RUNC_NOTE = (
    "RUN steps run under {runtime}, the engine's default runtime, not gVisor: they share the host's kernel "
    "and keep Docker's default capabilities, NET_RAW among them (raw and forged packets on the build network); "
    "the egress rules still keep them off the host and private addresses. An operator sets "
    '"default-runtime": "runsc" in dockerd\'s daemon.json to run them under gVisor'
)


@dataclass(frozen=True)
class EngineFacts:
    runtime: str
    cgroup_version: str
    pids_unsupported: str | None  # why no per-build pids cgroup, or None


def engine_facts(client: docker.DockerClient, base_url: str | None) -> EngineFacts:
    info = client.info()
    url = base_url or os.environ.get("DOCKER_HOST") or "unix://"
    version = str(info.get("CgroupVersion") or "1")
    reason = unsupported_reason(str(info.get("CgroupDriver") or ""), version, url.startswith("unix://"))
    return EngineFacts(str(info.get("DefaultRuntime") or "runc"), version, reason)


def isolation(facts: EngineFacts) -> BuildIsolation:
    notes = [] if facts.runtime == "runsc" else [_RUNC_NOTE.format(runtime=facts.runtime)]
    if facts.pids_unsupported:
        notes.append(f"RUN steps have no process limit: {facts.pids_unsupported}")
    return BuildIsolation(runtime=facts.runtime, pids_limit=facts.pids_unsupported is None, notes=notes)


def failure_hint(memory_mb: int, cpus: float, pids: int | None, disk_mb: int | None) -> str:
    limits = [f"{memory_mb} MiB of memory", f"{cpus:g} CPUs"]
    if pids is not None:
        limits.insert(0, f"at most {pids} processes")
    if disk_mb is not None:
        limits.append(f"{disk_mb} MiB of writes for the whole build")
    return f"read the log tail for what failed; RUN steps get {', '.join(limits)}"


def disk_exceeded(disk_mb: int, used: int) -> BuildFailed:
    return BuildFailed(
        f"the build wrote more than {disk_mb} MiB (its disk limit): {used / (1024 * 1024):.0f} MiB when it was stopped",
        "write less in RUN steps (clean caches and temporary files in the step that makes them), or ask the "
        "operator for a larger build_disk_mb",
    )


@dataclass
class DiskMeter:
    """Bytes a build has written: its committed layers and the running step's writable layer."""

    api: Any
    _sizes: dict[str, int] = field(default_factory=dict)

    def measure(self, containers: list[str], layers: list[str], running: bool) -> int:
        total = sum(self._layer_size(layer) for layer in list(layers))
        if running and containers:
            total += self._size_rw(containers[-1])
        return total

    def _image_size(self, image: str) -> tuple[int, str | None]:
        attrs = self.api.inspect_image(image)
        return int(attrs.get("Size") or 0), attrs.get("Parent") or None

    def _layer_size(self, layer: str) -> int:
        if layer not in self._sizes:
            try:
                size, parent = self._image_size(layer)
                base = self._image_size(parent)[0] if parent else 0
            except docker.errors.NotFound:
                return 0  # removed meanwhile (the build is being stopped)
            self._sizes[layer] = max(0, size - base)
        return self._sizes[layer]

    def _size_rw(self, container: str) -> int:
        try:
            resp = self.api._get(self.api._url("/containers/{0}/json", container), params={"size": 1})
            return int(self.api._result(resp, True).get("SizeRw") or 0)
        except docker.errors.NotFound:
            return 0  # committed and removed: its layer counts now
