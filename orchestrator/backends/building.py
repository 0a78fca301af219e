"""The builder protocol: images built from a context and pushed to a registry.

Always the control-plane host's Docker engine (``orchestrator/backends/docker/builder.py``), whichever backend
runs the workloads; like the backends, it speaks only these models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ..models import Egress
from .base import OnLayer, OnLog

__all__ = ["BuildIsolation", "BuildSpec", "Builder", "ImageInfo", "ImageRef"]


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    """One image build: what to build, within which limits, and whom to tell as it goes."""

    context: Path
    dockerfile: str  # relative to context, or an absolute path outside it that the platform wrote
    tag: str
    memory_mb: int
    cpus: float
    timeout_s: float
    network: Egress = "open"
    labels: dict[str, str] = field(default_factory=dict)
    pids_limit: int | None = None  # the processes of its RUN steps, where the engine allows (build_isolation)
    disk_mb: int | None = None  # what the build writes: its layers and the running step's
    on_log: OnLog
    on_layer: OnLayer | None = None


class ImageRef(BaseModel):
    tag: str
    digest: str | None = None
    size_bytes: int | None = None
    ports: list[int] = Field(default_factory=list, description="TCP ports the image exposes")


class BuildIsolation(BaseModel):
    runtime: str = Field(description="the engine's default runtime, which RUN steps run under")
    pids_limit: bool = Field(description="whether a build's processes are limited on this engine")
    notes: list[str] = Field(default_factory=list, description="what is not isolated, for build logs and status")


class ImageInfo(BaseModel):
    """What the engine holds under a reference: the image id and the registry digests it was pushed as."""

    id: str
    repo_digests: list[str] = Field(default_factory=list, description="'<repository>@sha256:...' entries")


@runtime_checkable
class Builder(Protocol):
    """Builds images from a context and pushes them to a registry: the control-plane host's Docker engine,
    whichever backend runs the workloads (on a Nomad cluster, clients pull the images from the registry)."""

    async def image_exists(self, image: str) -> bool: ...

    async def image_info(self, image: str) -> ImageInfo | None:
        """The image the engine has under the reference ``image`` (never an id), or None."""
        ...

    async def build_image(self, spec: BuildSpec) -> ImageRef:
        """Build ``spec.tag``. Layers are reported to ``spec.on_layer`` as they are committed, and removed
        again when the build fails or is cancelled.

        Raises: BuildFailed (with the engine's message, past ``timeout_s``, over ``disk_mb``).
        """
        ...

    async def build_isolation(self) -> BuildIsolation:
        """How RUN steps are confined on this engine, and what is not (notes)."""
        ...

    async def push_image(self, tag: str, on_log: OnLog) -> str | None:
        """Push to the registry ``tag`` names; returns the digest. Raises: BuildFailed."""
        ...

    async def remove_image(self, tag: str) -> None: ...

    async def remove_layers(self, layers: list[str]) -> list[str]:
        """Remove untagged build layers (those a build that died left behind); returns those done with
        (removed, gone, or tagged): the others are still in use, to be removed later."""
        ...

    async def close(self) -> None: ...
