"""A build runs exactly the image it made: its tag is checked against the digest recorded when it was built.

A tag can be moved (``docker tag`` by anyone with the engine's socket, a push to the registry), so
a deploy of a build, by build id or by its image reference, first compares what the engine or the
registry holds under the tag with the build's record: the image id (a build kept local) or the
registry digest it was pushed as (which the engine lists among the image's ``RepoDigests``).
"""

from __future__ import annotations

from ..backends.building import Builder
from ..errors import ImageNotAllowed, ImageNotFound, InvalidInput
from ..models import BuildRecord
from ..store import TenantStore
from .registry import registry_digest, registry_of

__all__ = ["BuildPins", "check_pin"]


class BuildPins:
    """A tenant's succeeded builds as images it may run (``ImagePolicy`` asks) and build FROM (the runner asks).

    ``via_registry``: workloads run on nodes that pull images from the registry (Nomad), not on the builder's
    engine, so a deploy checks what the registry serves.
    """

    def __init__(self, builder: Builder, via_registry: bool, ca_file: str = "") -> None:
        self.builder = builder
        self.via_registry = via_registry
        self.ca_file = ca_file

    async def image_for_deploy(self, ts: TenantStore, build_id: str) -> tuple[str, int | None]:
        """The image and port of a tenant's succeeded build, still the image it made.

        Raises: NotFound, InvalidInput (not succeeded), ImageNotFound, ImageNotAllowed (the tag was moved).
        """
        rec = await ts.builds.get(build_id)
        if rec.status != "succeeded" or rec.image is None:
            hint = (
                "wait for it: get_build shows its progress"
                if rec.status in ("queued", "running")
                else "read build_logs, fix the cause and build again"
            )
            raise InvalidInput(f"build {rec.id} is {rec.status}, not succeeded", hint)
        await check_pin(self.builder, rec, via_registry=self.via_registry, ca_file=self.ca_file)
        return rec.image, rec.port

    async def pinned(self, ts: TenantStore, image: str, *, on_builder: bool = False) -> bool:
        """Is ``image`` one of the tenant's succeeded builds, still the image it made: where workloads get it,
        or (``on_builder``, for FROM in a build) on the builder's engine?

        Raises: ImageNotFound, ImageNotAllowed (the tag was moved).
        """
        rec = await ts.builds.succeeded_with_image(image)
        if rec is None:
            return False
        await check_pin(self.builder, rec, via_registry=self.via_registry and not on_builder, ca_file=self.ca_file)
        return True


async def check_pin(builder: Builder, rec: BuildRecord, via_registry: bool, ca_file: str = "") -> None:
    """``via_registry``: where workloads pull from (Nomad), else the builder's engine (Docker, FROM);
    ``ca_file``: the CA of an https registry.

    Raises: ImageNotFound when the image is gone; ImageNotAllowed when the tag names another image now.
    """
    assert rec.image is not None
    moved = ImageNotAllowed(
        f"{rec.image} is not the image build {rec.id} made: that tag names another image now",
        "build again; an operator should find out who retagged it",
    )
    if via_registry and registry_of(rec.image):
        served = await registry_digest(rec.image, ca_file=ca_file)
        if served is None:
            raise ImageNotFound(f"the image of build {rec.id} is no longer in the registry", "build it again")
        if served != rec.image_digest:
            raise moved
        return
    info = await builder.image_info(rec.image)
    if info is None:
        raise ImageNotFound(f"the image of build {rec.id} is no longer on this host", "build it again")
    pushed_as = f"{rec.image.rsplit(':', 1)[0]}@{rec.image_digest}"
    if rec.image_digest is None or (info.id != rec.image_digest and pushed_as not in info.repo_digests):
        raise moved
