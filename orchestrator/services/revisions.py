"""Revisions: every deploy, update, env change and rollback of a service records what it runs now.

``RevisionLog.change`` is the one transaction around such a change: the body writes the new spec or
env, and the revision (the spec, the image's digest where the engine or the build says, the env
encrypted) is recorded in the same transaction, so there is never a change without its revision or a
revision without its change. A change that does not come up is undone by ``undo`` (``update.py``): the
previous spec and env come back, the new revision is kept, marked failed, and the one before is live again.
A service recorded before revisions were kept gets its current state recorded first, cause ``existing``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import NotFound
from ..models import ServiceRecord, ServiceSpec
from ..store import Database, TenantStore, Tx

__all__ = ["Change", "DigestOf", "RevisionLog", "cause"]

# The digest of what the engine holds under an image reference now (None: not there, or it cannot tell).
DigestOf = Callable[[str], Awaitable[str | None]]


def cause(what: str, names: Iterable[str]) -> str:
    """A revision's cause: the tool and what it changed (names of fields or env vars, never values)."""
    text = f"{what}: {', '.join(names)}"
    return text if len(text) <= 200 else text[:199] + "…"


@dataclass
class Change:
    """A change of a service under way: its transaction, the service and env before it, the revision that
    was live before it, and (once recorded) the new revision's number."""

    tx: Tx
    before: ServiceRecord
    env: dict[str, str]
    live: int | None
    number: int = 0


class RevisionLog:
    def __init__(self, db: Database, keep: int, digest_of: DigestOf | None = None) -> None:
        """``keep``: revisions kept per service; ``digest_of``: where the engine that runs workloads can say
        what an image reference names (Docker), else images are recorded by reference."""
        self.db = db
        self.keep = keep
        self.digest_of = digest_of

    async def pin(self, ts: TenantStore, spec: ServiceSpec) -> str | None:
        """The digest of the spec's image now: its build's, or the engine's image id; None when unknown."""
        if spec.build_id is not None:
            try:
                return (await ts.builds.get(spec.build_id)).image_digest
            except NotFound:
                return None
        return await self.digest_of(spec.image) if self.digest_of is not None else None

    @asynccontextmanager
    async def change(self, ts: TenantStore, service_id: str, cause: str, digest: str | None) -> AsyncIterator[Change]:
        """One transaction: the body's writes to the service's spec and env, then its new revision.

        Raises: NotFound when the service is gone; whatever the body raises (nothing is written then)."""
        async with self.db.transaction() as tx:
            before = await ts.services.get(service_id, tx)
            env = await ts.env.get_all(service_id, tx)
            live = await ts.revisions.live(service_id, tx)
            if live is None and not await ts.revisions.any(service_id, tx):
                live = await ts.revisions.add(service_id, before.spec, env, "existing", None, self.keep, tx)
            change = Change(tx, before, env, live)
            yield change
            change.number = await self.record(ts, tx, service_id, cause, digest)

    async def record(self, ts: TenantStore, tx: Tx, service_id: str, cause: str, digest: str | None) -> int:
        """Record the service's spec and env as they are in ``tx`` as its new, live revision."""
        spec = (await ts.services.get(service_id, tx)).spec
        env = await ts.env.get_all(service_id, tx)
        return await ts.revisions.add(service_id, spec, env, cause, digest, self.keep, tx)

    async def undo(self, ts: TenantStore, change: Change) -> None:
        """Put back the spec and env from before ``change``; its revision is failed, the previous one live."""
        service_id = change.before.id
        async with self.db.transaction() as tx:
            await ts.services.update(service_id, spec=change.before.spec, desired_state="running", tx=tx)
            await ts.env.replace(service_id, change.env, tx)
            await ts.revisions.undo(service_id, change.number, change.live, tx)
