"""Pushing a built image to the registry its tag names."""

from __future__ import annotations

import anyio
import docker.errors

from ...errors import AgentHostError, BuildFailed
from ..base import OnLog
from .engine import DockerEngine, docker_errors

__all__ = ["push_image"]


async def push_image(engine: DockerEngine, tag: str, on_log: OnLog) -> str | None:
    """Push ``tag`` to the registry its name starts with. Returns the registry's digest.

    Raises: BuildFailed when the registry refuses or cannot be reached.
    """
    repository, _, version = tag.rpartition(":")
    digest: list[str] = []
    lines: list[str] = []

    def push() -> None:
        try:
            for chunk in engine.client().api.push(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    raise BuildFailed(
                        f"pushing to the registry failed: {str(chunk['error']).strip()}",
                        "an operator must check the local registry (infra/registry.sh) and the 'registry' setting",
                    )
                aux = chunk.get("aux") or {}
                if "Digest" in aux:
                    digest.append(str(aux["Digest"]))
                if chunk.get("status") and not chunk.get("progressDetail") and not chunk.get("id"):
                    lines.append(str(chunk["status"]))
        except docker.errors.APIError as exc:
            raise BuildFailed(f"pushing to the registry failed: {exc.explanation}") from exc

    def work() -> None:
        with docker_errors(f"push {tag}"):
            push()

    try:
        await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    finally:
        for line in lines:
            await on_log(line)
    if not digest:
        raise AgentHostError(f"the registry did not confirm the push of {tag}")
    return digest[-1]
