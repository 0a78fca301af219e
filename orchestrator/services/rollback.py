"""list_revisions and rollback_service: a service's recorded versions, and going back to one of them.

A rollback restores the image, config and env of a kept revision as a new revision (cause ``rollback
of N``), through the same checks as a deploy: the image must still be allowed (image policy) and present,
a build's image still the one it made, and where a digest was recorded, the reference must still name it.
The service's SSH keys are access, not version: they stay as they are. A rolled-back version that does not
come up is undone like a failed update (``update.py``).
"""

from __future__ import annotations

from ..errors import ImageNotAllowed, ImageNotFound, InvalidInput, NotFound
from ..models import Principal, RevisionRecord, ServiceSpec
from ..progress import Reporter, silent
from ..store import TenantStore
from .manager import ServiceManager
from .models import Revision, RevisionList, RolledBack
from .update import apply_update

__all__ = ["ServiceRevisions"]

_GONE = "list_revisions shows the others; update_service deploys another image or build"


class ServiceRevisions:
    def __init__(self, services: ServiceManager) -> None:
        self.services = services

    async def list(self, p: Principal, ref: str) -> RevisionList:
        """Raises: NotFound."""
        ts = self.services.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        return RevisionList(revisions=[Revision.of(r) for r in await ts.revisions.all(rec.id)])

    async def rollback(
        self, p: Principal, ref: str, number: int, wait: bool = True, report: Reporter = silent
    ) -> RolledBack:
        """Raises: NotFound (service or revision), InvalidInput (the live one), ImageNotAllowed, ImageNotFound,
        QuotaExceeded, Conflict (a backup holds a volume), WorkloadFailed (it did not come up; undone)."""
        s = self.services
        ts = s.store.scoped(p.tenant_id)
        rec = await ts.services.get(ref)
        rev, env = await ts.revisions.get(rec.id, rec.name, number)
        if rev.live:
            raise InvalidInput(f"revision {number} of {rec.name} is the live one", "pick another from list_revisions")
        await ts.backups.check_free("volume", [v.name for v in rec.spec.volumes])
        spec = rev.spec.model_copy(update={"ssh_public_keys": rec.spec.ssh_public_keys})
        digest = await self._check_image(ts, rev, spec)
        spec.runtime = await s.resolve_runtime(spec.runtime)
        await s.check_env_count(ts, set(env))
        async with s.revisions.change(ts, rec.id, f"rollback of {number}", digest) as change:
            await s.check_quota(ts, change.tx, spec.memory_mb, spec.cpus, replacing=change.before.spec)
            await ts.services.update(rec.id, spec=spec, tx=change.tx)
            await ts.env.replace(rec.id, env, change.tx)
        what = f"rollback to revision {number}"
        updated = await apply_update(s, ts, change, wait, report, what, what, "list_revisions shows the others")
        view = await s.view(ts, updated)
        return RolledBack(service=view.name, revision=change.number, status=view.status)

    async def _check_image(self, ts: TenantStore, rev: RevisionRecord, spec: ServiceSpec) -> str | None:
        """The digest of the revision's image now, when the tenant may still run it and it is still that image.

        Raises: ImageNotAllowed, ImageNotFound."""
        s = self.services
        which = f"revision {rev.number}"
        try:
            if spec.build_id is not None:
                await s.images.image_of(ts, None, spec.build_id)
            else:
                await s.images.allowed(ts, spec.image)
        except ImageNotAllowed as exc:
            raise ImageNotAllowed(f"{which} cannot come back: {exc.message}", exc.hint) from exc
        except NotFound as exc:  # the build is gone, or its image (ImageNotFound)
            raise ImageNotFound(f"{which} cannot come back: {exc.message}", _GONE) from exc
        if not await s.backend.image_exists(spec.image):
            raise ImageNotFound(f"{which} cannot come back: image {spec.image!r} is no longer on this host", _GONE)
        digest = await s.revisions.pin(ts, spec)
        if rev.image_digest is not None and digest is not None and digest != rev.image_digest:
            raise ImageNotFound(
                f"{which} cannot come back: it ran {spec.image} as {rev.image_digest}, and that reference names"
                f" {digest} now",
                _GONE,
            )
        return digest
