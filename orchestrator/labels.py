"""What agenthost writes on the things it makes: the ``agenthost.*`` label keys and the names it derives.

Every container, Nomad job, volume and network this platform makes carries labels (Docker labels,
Nomad job meta): ``managed`` and ``instance`` say it is this platform's (two platforms sharing an
engine never take each other's work for orphans), ``id``, ``tenant`` and ``kind`` what it is,
``spec-hash`` which spec made it. Names derive from ids the same way on every backend, so the
engine's name of a workload, volume or network is known without asking the engine.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "L_BUILD",
    "L_DATABASE",
    "L_EGRESS",
    "L_ENGINE",
    "L_HASH",
    "L_ID",
    "L_INSTANCE",
    "L_KIND",
    "L_MANAGED",
    "L_NAME",
    "L_POOL",
    "L_RECIPE",
    "L_TENANT",
    "PREFIX",
    "container_name",
    "database_volume",
    "slot_base",
    "slot_id",
    "tenant_bridge_name",
    "tenant_network",
    "tenant_of_network",
    "volume_name",
]

PREFIX = "agenthost"
L_MANAGED = f"{PREFIX}.managed"
L_INSTANCE = f"{PREFIX}.instance"
L_ID = f"{PREFIX}.id"
L_TENANT = f"{PREFIX}.tenant"
L_KIND = f"{PREFIX}.kind"
L_HASH = f"{PREFIX}.spec-hash"
L_NAME = f"{PREFIX}.name"  # the tenant's name of a service, database or build
L_ENGINE = f"{PREFIX}.engine"
L_DATABASE = f"{PREFIX}.database"
L_BUILD = f"{PREFIX}.build"
L_POOL = f"{PREFIX}.pool"  # the shape of a pooled sandbox container
L_EGRESS = f"{PREFIX}.egress"  # the policy of a shared egress bridge
L_RECIPE = f"{PREFIX}.recipe"  # the recipe digest of a platform image the offline builder made

_TENANT_NETWORK = "ah-net-"


def container_name(workload_id: str) -> str:
    """The engine's name of a workload's container (Docker) or job (Nomad)."""
    return f"ah-{workload_id}"


# A second container of a workload during a zero-downtime update: "next" is the new version, started beside
# the current one; "old" is the one it replaced, draining until it is removed (Backend.promote_workload).
SLOTS = ("next", "old")


def slot_id(workload_id: str, slot: str) -> str:
    """The workload id of the ``slot`` ("next" or "old") container of ``workload_id``."""
    return f"{workload_id}.{slot}"


def slot_base(workload_id: str) -> tuple[str, str] | None:
    """``(workload id, slot)`` when ``workload_id`` names a slot container, else None."""
    base, dot, slot = workload_id.rpartition(".")
    return (base, slot) if dot and base and slot in SLOTS else None


def volume_name(tenant_id: str, name: str) -> str:
    """The engine's name of a tenant's named volume."""
    return f"ah-{tenant_id}-{name}"


def database_volume(database_id: str) -> str:
    """The engine's name of a database's data volume."""
    return f"ah-{database_id}-data"


def tenant_network(tenant_id: str) -> str:
    """The engine's name of a tenant's private network."""
    return f"{_TENANT_NETWORK}{tenant_id}"


def tenant_of_network(name: str) -> str | None:
    """The tenant whose private network ``name`` is, or None for another network."""
    return name.removeprefix(_TENANT_NETWORK) if name.startswith(_TENANT_NETWORK) else None


def tenant_bridge_name(network_name: str) -> str:
    """The Linux bridge of a tenant network: interface names stop at 15 characters, so a stable hash."""
    return "ahT" + hashlib.sha256(network_name.encode()).hexdigest()[:12]
