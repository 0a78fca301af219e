"""Quotas: what a tenant holds against what it may hold.

A check that guards something new (a service, database, sandbox, build, backup, API key, a volume a
deploy or restore makes) reads the tenant's usage inside the store transaction that records the new
thing. ``Database.transaction`` is ``BEGIN IMMEDIATE``: SQLite runs one such transaction at a time,
across processes sharing the data dir too, so each of any number of concurrent calls sees the records
of those before it, and a quota cannot be raced. Engine work comes after the record and is undone with
it when it fails.

Memory and CPUs are those of services, databases and sandboxes together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import QuotaExceeded
from .settings import Quotas
from .store import TenantStore, Tx

__all__ = ["WorkloadKind", "Workloads", "check_backups", "check_count", "check_volumes", "check_workload", "workloads"]

WorkloadKind = Literal["service", "database", "sandbox"]

_PLURAL: dict[WorkloadKind, str] = {"service": "services", "database": "databases", "sandbox": "sandboxes"}
_BACKUP_HINT = "delete_backup the ones you no longer need (list_backups shows them)"
_VOLUME_HINT = (
    "mount a volume you already have, or delete_service a service (its volumes go with it unless kept or shared)"
)


@dataclass(frozen=True)
class Workloads:
    """A tenant's services, databases and sandboxes: counts, and their memory and CPUs together."""

    services: int = 0
    databases: int = 0
    sandboxes: int = 0
    memory_mb: int = 0
    cpus: float = 0.0

    def count(self, kind: WorkloadKind) -> int:
        return {"service": self.services, "database": self.databases, "sandbox": self.sandboxes}[kind]


async def workloads(ts: TenantStore, tx: Tx | None = None) -> Workloads:
    """What the tenant runs (services and databases not being deleted, every sandbox); inside ``tx`` when given."""
    services = await ts.services.usage(tx)
    databases = await ts.databases.usage(tx)
    sandboxes = await ts.sandboxes.usage(tx)
    return Workloads(
        services=services[0],
        databases=databases[0],
        sandboxes=sandboxes[0],
        memory_mb=services[1] + databases[1] + sandboxes[1],
        cpus=services[2] + databases[2] + sandboxes[2],
    )


def check_workload(
    quotas: Quotas,
    held: Workloads,
    kind: WorkloadKind,
    memory_mb: int,
    cpus: float,
    replacing: tuple[int, float] | None = None,
) -> None:
    """One more workload of ``kind`` with these limits, or (``replacing`` its memory and CPUs) one changed.

    Raises: QuotaExceeded saying which quota and by how much.
    """
    if memory_mb > quotas.max_service_memory_mb:
        raise QuotaExceeded(f"memory_mb {memory_mb} is above the limit of one {kind}, {quotas.max_service_memory_mb}")
    mem, cpu = held.memory_mb, held.cpus
    if replacing is not None:
        mem, cpu = mem - replacing[0], cpu - replacing[1]
    else:
        limit = {"service": quotas.max_services, "database": quotas.max_databases, "sandbox": quotas.max_sandboxes}
        if held.count(kind) + 1 > limit[kind]:
            raise QuotaExceeded(f"the tenant already has {held.count(kind)} of {limit[kind]} {_PLURAL[kind]}")
    if mem + memory_mb > quotas.max_memory_mb:
        raise QuotaExceeded(
            f"memory of services, databases and sandboxes would reach {mem + memory_mb} MiB (in use: {mem} MiB),"
            f" above the quota of {quotas.max_memory_mb} MiB"
        )
    if cpu + cpus > quotas.max_cpus + 1e-9:
        raise QuotaExceeded(
            f"cpus of services, databases and sandboxes would reach {cpu + cpus:g} (in use: {cpu:g}),"
            f" above the quota of {quotas.max_cpus:g}"
        )


def check_volumes(quotas: Quotas, held: set[str], wanted: set[str]) -> None:
    """``wanted`` volumes mounted, the ones not in ``held`` made anew. Raises: QuotaExceeded."""
    new = wanted - held
    if new and len(held) + len(new) > quotas.max_volumes:
        raise QuotaExceeded(
            f"the tenant already has {len(held)} of {quotas.max_volumes} volumes, and this would add"
            f" {len(new)} ({', '.join(sorted(new))})",
            _VOLUME_HINT,
        )


def check_backups(quotas: Quotas, count: int, complete_bytes: int) -> None:
    """One more backup, with ``count`` recorded and ``complete_bytes`` in complete ones. Raises: QuotaExceeded."""
    if count >= quotas.max_backups:
        raise QuotaExceeded(f"the tenant already has {count} of {quotas.max_backups} backups", _BACKUP_HINT)
    if complete_bytes >= quotas.max_backup_bytes:
        raise QuotaExceeded(
            f"complete backups hold {complete_bytes} bytes, at or above the quota of {quotas.max_backup_bytes} bytes",
            _BACKUP_HINT,
        )


def check_count(count: int, limit: int, what: str, hint: str | None = None) -> None:
    """One more of ``what`` (plural) when ``count`` exist. Raises: QuotaExceeded."""
    if count + 1 > limit:
        raise QuotaExceeded(f"the tenant already has {count} of {limit} {what}", hint)
