"""A tenant's named volumes, which its services mount by name: their engine names, which the tenant holds,
and the use-cases that list and delete them.

What a tenant holds is what the engine has (kept volumes of deleted services too) and what deploys and
restores under way are making, known from the store before the engine has them; the ``max_volumes``
quota counts that set, read in the transaction that records the deploy or restore.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..errors import Conflict, NotFound
from ..labels import L_TENANT, volume_name
from ..models import Deleted, Principal, ServiceRecord
from ..store import Store, TenantStore, Tx

__all__ = [
    "Volume",
    "VolumeList",
    "VolumeManager",
    "deletion_summary",
    "engine_volumes",
    "volumes_held",
    "volumes_only_of",
]


async def engine_volumes(backend: Backend, tenant_id: str) -> set[str]:
    """The names of the tenant's service volumes the engine has (a database's data volume is not one)."""
    prefix = volume_name(tenant_id, "")
    listed = await backend.list_volumes({L_TENANT: tenant_id})
    return {n.removeprefix(prefix) for n in listed if n.startswith(prefix)}


async def volumes_only_of(ts: TenantStore, rec: ServiceRecord) -> list[str]:
    """The volumes of ``rec`` that no other service of the tenant mounts (a delete removes those)."""
    others = {v.name for o in await ts.services.all() if o.id != rec.id for v in o.spec.volumes}
    return [v.name for v in rec.spec.volumes if v.name not in others]


async def deletion_summary(ts: TenantStore, rec: ServiceRecord, keep_volumes: bool) -> str:
    """What deleting ``rec`` would remove, for the confirmation prompt."""
    lost = [] if keep_volumes else await volumes_only_of(ts, rec)
    kept = [v.name for v in rec.spec.volumes if v.name not in lost]
    what = f"Delete service {rec.name!r}: its container and its {len(await ts.env.keys(rec.id))} env vars"
    what += f", and the volumes {', '.join(lost)} with ALL their files" if lost else ""
    what += f". The volumes {', '.join(kept)} are kept" if kept else ""
    return what + ". This cannot be undone."


async def volumes_held(ts: TenantStore, engine: set[str], tx: Tx | None = None) -> set[str]:
    """The tenant's volumes: ``engine`` (``engine_volumes``, listed just before), and those that deploys and
    restores under way are making."""
    return engine | await ts.services.volume_names(tx) | await ts.backups.volumes_being_restored(tx)


class Volume(BaseModel):
    name: str
    status: Literal["in_use", "kept", "restoring"] = Field(
        description="in_use: a service mounts it; kept: none does (delete_volume frees it); restoring: a restore"
        " is writing it"
    )
    used_by: list[str] = Field(description="services that mount it, running or not")


class VolumeList(BaseModel):
    volumes: list[Volume]
    max_volumes: int = Field(description="your quota; every volume listed counts toward it")


class VolumeManager:
    def __init__(self, store: Store, backend: Backend) -> None:
        self.store = store
        self.backend = backend

    async def list(self, p: Principal) -> VolumeList:
        ts = self.store.scoped(p.tenant_id)
        engine = await engine_volumes(self.backend, p.tenant_id)
        users = await ts.services.volume_users()
        restoring = await ts.backups.volumes_being_restored()
        volumes = [
            Volume(
                name=name,
                status="in_use" if name in users else "restoring" if name in restoring else "kept",
                used_by=users.get(name, []),
            )
            for name in sorted(engine | set(users) | restoring)
        ]
        quotas = (await self.store.tenants.get(p.tenant_id)).quotas
        return VolumeList(volumes=volumes, max_volumes=quotas.max_volumes)

    async def get(self, p: Principal, name: str) -> Volume:
        """Raises: NotFound."""
        for v in (await self.list(p)).volumes:
            if v.name == name:
                return v
        raise NotFound(f"no volume named {name!r}", "list_volumes shows the volumes you have")

    async def delete(self, p: Principal, name: str) -> Deleted:
        """Delete a volume no service mounts.

        Raises: NotFound; Conflict while a service mounts it (naming them) or a backup or restore uses it."""
        ts = self.store.scoped(p.tenant_id)
        await self.get(p, name)
        async with self.store.db.transaction() as tx:
            users = (await ts.services.volume_users(tx)).get(name)
            if users:
                raise Conflict(
                    f"volume {name!r} is mounted by service{'s' if len(users) > 1 else ''} {', '.join(users)}",
                    "delete_service those services first (keep_volumes=true keeps it), then delete_volume",
                )
            await ts.backups.check_free("volume", [name], tx)
        gone = await self.backend.remove_volume(volume_name(p.tenant_id, name))
        return Deleted(kind="volume", name=name, id=name, removed=[f"volume {name} and its files"] if gone else [])
