"""Images have owners: which images a tenant may run (services, sandboxes) and build FROM.

Allowed, in this order of checks:

1. the caller's own succeeded builds, each pinned to the image that build made (``own`` checks it);
2. the platform's images: every ``image_*`` and ``build_base_*`` setting, the sandbox default and pool
   images, exactly as configured;
3. references matching one of the operator's glob patterns in ``image_allow`` (AGENTHOST_IMAGE_ALLOW),
   matched against the normalised reference (lowercase registry host, ``:latest`` when no tag is given).

Always refused, whatever the patterns say:

- anything the engine would resolve as an image id or id prefix (``image_refs.is_id_like``);
- a reference into a build namespace: ``ah-build/<tenant>/...`` (the local tags of builds when there
  is no registry) or a ``t_<id>`` namespace under any registry (the registry's tags of builds). The
  caller's own namespace runs only as one of its succeeded builds; another tenant's never, in any
  registry spelling, since aliases of the registry (``127.1:5000``, ``[::1]:5000``, DNS names that
  resolve to this host) all reach the same images;
- unless it is one of the platform's images as configured, a registry on this host other than the
  platform's own (``registry``), however its host is written (``image_refs.is_local_host``): what it
  serves is nothing a tenant was given.

A digest reference (``name@sha256:...``) passes only where its full text does: it is never one of the
platform's images, and matches a pattern only when the pattern covers it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase
from typing import Protocol

from ..errors import ImageNotAllowed, InvalidInput
from ..settings import Settings
from ..store import TenantStore
from .dockerfile import image_uses
from .refs import Reference, host_addresses, host_names, is_local_host, parse_reference

__all__ = ["ImagePolicy", "OwnBuild", "TenantBuilds"]

# Is this normalised reference one of the caller's succeeded builds, still the image the build made?
# Raises ImageNotAllowed when the tag now names another image.
OwnBuild = Callable[[str], Awaitable[bool]]


class TenantBuilds(Protocol):
    """A tenant's succeeded builds as images (``builds.BuildPins``)."""

    async def image_for_deploy(self, ts: TenantStore, build_id: str) -> tuple[str, int | None]:
        """The image of build ``build_id`` and the port it exposes, pinned to what the build made.

        Raises: NotFound, InvalidInput, ImageNotFound, ImageNotAllowed."""
        ...

    async def pinned(self, ts: TenantStore, image: str) -> bool:
        """``OwnBuild`` for the tenant of ``ts``."""
        ...


_TENANT = re.compile(r"t_[a-z0-9]+")
_UNEVALUATED = set("$'\"\\`")


def _normal(image: str) -> str:
    try:
        return parse_reference(image).text
    except (ImageNotAllowed, InvalidInput):
        return image


class ImagePolicy:
    def __init__(self, settings: Settings, builds: TenantBuilds | None = None) -> None:
        """``builds``: where tenants' builds are found; without it, only images by reference are allowed."""
        self.settings = settings
        self.registry = settings.registry.strip().split("/", 1)[0].lower()
        self.builds = builds

    @property
    def platform_images(self) -> list[str]:
        s = self.settings
        fields = [f for f in type(s).model_fields if f.startswith(("image_", "build_base_"))]
        names = [getattr(s, f) for f in fields] + [s.default_sandbox_image, *s.pool_images]
        return list(dict.fromkeys(_normal(n) for n in names if isinstance(n, str) and n))

    def hint(self) -> str:
        patterns = self.settings.image_allow
        return (
            f"allowed: the platform's images ({', '.join(self.platform_images)})"
            + (f", images matching {', '.join(patterns)}" if patterns else "")
            + ", and your own builds (by build_id, or the image get_build shows)"
            + ("" if patterns else "; an operator can allow more with AGENTHOST_IMAGE_ALLOW")
        )

    def refuse(self, image: str, reason: str) -> ImageNotAllowed:
        return ImageNotAllowed(f"image {image[:120]!r} {reason}", self.hint())

    async def check(self, image: str, tenant_id: str, own: OwnBuild | None) -> str:
        """The normalised reference, when ``tenant_id`` may use ``image``.

        Raises: ImageNotAllowed; InvalidInput when ``image`` is not a reference at all.
        """
        try:
            ref = parse_reference(image)
        except ImageNotAllowed as exc:
            raise ImageNotAllowed(exc.message, self.hint()) from None
        owner = _build_namespace(ref)
        if owner is not None:
            if owner != tenant_id.lower():
                raise self.refuse(image, "is in another tenant's build namespace")
            if own is None or not await own(ref.text):
                raise self.refuse(image, "is in your build namespace but is not one of your succeeded builds")
            return ref.text
        if ref.text in self.platform_images:
            return ref.text
        if ref.domain is not None and ref.domain != self.registry:
            if is_local_host(ref.domain, host_names(), host_addresses()):
                raise self.refuse(image, "names a registry on this host other than the platform's")
        if any(fnmatchcase(ref.text, pattern) for pattern in self.settings.image_allow):
            return ref.text
        raise self.refuse(image, "is not one this platform allows")

    async def allowed(self, ts: TenantStore, image: str) -> str:
        """``check`` for the tenant of ``ts``, its own builds included."""
        builds = self.builds
        return await self.check(image, ts.tenant_id, (lambda ref: builds.pinned(ts, ref)) if builds else None)

    async def image_of(self, ts: TenantStore, image: str | None, build_id: str | None) -> tuple[str, int | None]:
        """What a workload runs: ``image`` when allowed, or the image of build ``build_id`` and the port it
        exposes. Raises: InvalidInput, ImageNotAllowed, and what ``TenantBuilds.image_for_deploy`` raises."""
        if (image is None) == (build_id is None):
            raise InvalidInput(
                "pass exactly one of image and build_id",
                "image runs a platform or operator-allowed image; build_id runs the image a build_from_git made",
            )
        if image is not None:
            return await self.allowed(ts, image), None
        if self.builds is None:
            raise InvalidInput("builds are not available on this platform", "pass image instead")
        assert build_id is not None
        return await self.builds.image_for_deploy(ts, build_id)

    async def check_dockerfile(self, text: str, tenant_id: str, own: OwnBuild | None) -> None:
        """Every image a Dockerfile makes the builder fetch must pass ``check``; one written with a
        variable, quotes or escapes is refused rather than evaluated.

        Raises: ImageNotAllowed, InvalidInput (with the instruction in the message).
        """
        for use in image_uses(text):
            if _UNEVALUATED & set(use.ref):
                raise self.refuse(
                    use.ref, f"(in {use.where}) is written with a variable, quotes or escapes: write it plainly"
                )
            try:
                await self.check(use.ref, tenant_id, own)
            except (ImageNotAllowed, InvalidInput) as exc:
                raise type(exc)(f"{use.where}: {exc.message}", exc.hint) from None


def _build_namespace(ref: Reference) -> str | None:
    """The tenant whose build namespace ``ref`` is in ("" when it names none), or None outside them."""
    parts = ref.parts
    if parts[0] == "ah-build":
        return parts[1] if len(parts) > 2 else ""
    return next((p for p in parts[:-1] if _TENANT.fullmatch(p)), None)
