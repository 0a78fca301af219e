"""``docker build`` of a prepared context with memory, CPU and time limits, streaming its log."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import docker.errors

from ..errors import AgentHostError, BuildFailed
from .base import ImageRef, OnLog

if TYPE_CHECKING:
    from .docker import DockerBackend

__all__ = ["build_image_sync"]


async def build_image_sync(
    backend: DockerBackend,
    context: Path,
    dockerfile: str,
    tag: str,
    on_log: OnLog,
    memory_mb: int,
    cpus: float,
    timeout_s: float,
) -> ImageRef:
    """Raises: BuildFailed with the engine's message, or when the time limit passes."""
    cancelled = threading.Event()

    async def emit(line: str) -> None:
        await on_log(line)

    def build() -> ImageRef:
        api: Any = backend._docker().api
        deadline = time.monotonic() + timeout_s
        try:
            return consume(api, deadline)
        except docker.errors.APIError as exc:  # the engine refused the build itself (e.g. no such Dockerfile)
            raise BuildFailed(str(exc.explanation or exc)) from exc

    def consume(api: Any, deadline: float) -> ImageRef:
        stream = api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            container_limits={
                "memory": memory_mb * 1024 * 1024,
                "memswap": memory_mb * 1024 * 1024,
                "cpushares": max(2, int(cpus * 1024)),
            },
        )
        image_id: str | None = None
        for chunk in stream:
            if cancelled.is_set():
                raise BuildFailed("build cancelled")
            if time.monotonic() > deadline:
                raise BuildFailed(f"build exceeded its time limit of {int(timeout_s)} s")
            if "error" in chunk:
                raise BuildFailed(str(chunk.get("error", "")).strip() or "build failed")
            text = chunk.get("stream") or chunk.get("status")
            if text:
                anyio.from_thread.run(emit, str(text).rstrip("\n"))
            aux = chunk.get("aux") or {}
            if "ID" in aux:
                image_id = aux["ID"]
        if image_id is None:
            raise AgentHostError("the engine finished the build without an image id")
        image = backend._docker().images.get(tag)
        return ImageRef(tag=tag, digest=image_id, size_bytes=int(image.attrs.get("Size", 0)))

    try:
        return await backend._run(f"build {tag}", build)
    finally:
        cancelled.set()
