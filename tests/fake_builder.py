"""An in-memory ``Builder`` (re-exported by tests/fakes.py): builds run a scripted step each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orchestrator.backends.base import OnLog
from orchestrator.backends.building import BuildIsolation, BuildSpec, ImageInfo, ImageRef

__all__ = ["FakeBuilder"]

Step = Callable[[str], Awaitable[None]]


class FakeBuilder:
    """Runs each build's scripted step (``steps``, first in first out); records what was removed."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.removed_images: list[str] = []
        self.removed_layers: list[str] = []
        self.images: set[str] = set()

    async def image_exists(self, image: str) -> bool:
        return image in self.images

    async def image_info(self, image: str) -> ImageInfo | None:
        return ImageInfo(id="sha256:x") if image in self.images else None

    async def build_image(self, spec: BuildSpec) -> ImageRef:
        tag = spec.tag
        await spec.on_log(f"building {tag}")
        if spec.on_layer is not None:
            await spec.on_layer("layer-" + tag.rsplit(":", 1)[1])
        step = self.steps.pop(0) if self.steps else None
        if step is not None:
            await step(tag)
        self.images.add(tag)
        return ImageRef(tag=tag, digest="sha256:x", size_bytes=1, ports=[])

    async def build_isolation(self) -> BuildIsolation:
        return BuildIsolation(runtime="runsc", pids_limit=True)

    async def push_image(self, tag: str, on_log: OnLog) -> str | None:
        return "sha256:pushed"

    async def remove_image(self, tag: str) -> None:
        self.removed_images.append(tag)
        self.images.discard(tag)

    async def remove_layers(self, layers: list[str]) -> list[str]:
        self.removed_layers += layers
        return layers

    async def close(self) -> None:
        return None
