"""The Builder on a Docker engine: ``docker build`` with per-build limits, pushes, and what builds leave removed.

It shares its ``DockerEngine`` with the Docker backend (one client, one thread budget, one set of
egress rules); on a Nomad cluster it has an engine of its own, the control-plane host's.
"""

from __future__ import annotations

import time

import anyio
import docker.errors

from ...errors import AgentHostError
from ..base import OnLog
from ..building import BuildIsolation, BuildSpec, ImageInfo, ImageRef
from .build import run_build
from .build_cleanup import remove_layers_sync
from .build_limits import EngineFacts, engine_facts, isolation
from .cgroups import BuildCgroup, sweep
from .engine import DockerEngine
from .push import push_image

__all__ = ["DockerBuilder"]

_FACTS_TTL_S = 30.0


class DockerBuilder:
    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine
        self._facts: tuple[EngineFacts | None, float] = (None, 0.0)
        self._stale_cgroups: list[BuildCgroup] = []

    def _facts_sync(self) -> EngineFacts:
        """The engine's default runtime and cgroup setup, asked at most every ``_FACTS_TTL_S``."""
        cached, at = self._facts
        if cached is None or time.monotonic() - at > _FACTS_TTL_S:
            cached = engine_facts(self.engine.client(), self.engine.base_url)
            self._facts = (cached, time.monotonic())
        return cached

    def _make_cgroup(self, facts: EngineFacts, limit: int) -> BuildCgroup:
        self._stale_cgroups = [cg for cg in self._stale_cgroups if not cg.remove()]
        sweep(facts.cgroup_version)
        return BuildCgroup(facts.cgroup_version, limit)

    async def _release_cgroup(self, cgroup: BuildCgroup) -> None:
        """Remove the build's cgroup; a step container the engine is still tearing down keeps it a moment."""
        for _ in range(20):
            if await anyio.to_thread.run_sync(cgroup.remove):
                return
            await anyio.sleep(0.5)
        self._stale_cgroups.append(cgroup)  # removed before the next build starts

    async def image_exists(self, image: str) -> bool:
        return await self.engine.image_exists(image)

    async def image_info(self, image: str) -> ImageInfo | None:
        def inspect() -> ImageInfo | None:
            try:
                attrs = self.engine.client().api.inspect_image(image)
            except docker.errors.NotFound:
                return None
            return ImageInfo(id=str(attrs["Id"]), repo_digests=[str(d) for d in attrs.get("RepoDigests") or []])

        return await self.engine.run(f"inspect image {image}", inspect)

    async def build_image(self, spec: BuildSpec) -> ImageRef:
        facts = await self.engine.run("docker info", self._facts_sync)
        if facts.runtime == "runsc":
            await spec.on_log("[agenthost] RUN steps run under gVisor (runsc)")
        for note in isolation(facts).notes:
            await spec.on_log(f"[agenthost] warning: {note}")
        cgroup = None
        if spec.pids_limit is not None and facts.pids_unsupported is None:
            try:
                cgroup = await anyio.to_thread.run_sync(self._make_cgroup, facts, spec.pids_limit)
            except OSError as exc:
                raise AgentHostError(f"could not make the build's pids cgroup: {exc}") from exc
        try:
            return await run_build(self.engine, spec, cgroup)
        finally:
            if cgroup is not None:
                with anyio.CancelScope(shield=True):
                    await self._release_cgroup(cgroup)

    async def build_isolation(self) -> BuildIsolation:
        return isolation(await self.engine.run("docker info", self._facts_sync))

    async def push_image(self, tag: str, on_log: OnLog) -> str | None:
        return await push_image(self.engine, tag, on_log)

    async def remove_image(self, tag: str) -> None:
        def remove() -> None:
            try:
                self.engine.client().images.remove(tag, force=True, noprune=False)
            except docker.errors.ImageNotFound:
                pass

        await self.engine.run(f"remove image {tag}", remove)

    async def remove_layers(self, layers: list[str]) -> list[str]:
        return await self.engine.run("remove build layers", remove_layers_sync, self.engine.client(), layers)

    async def close(self) -> None:
        await self.engine.close()
