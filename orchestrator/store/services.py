"""Service records, always scoped to one tenant."""

from __future__ import annotations

import enum
import json
import uuid
from typing import Literal

from ..errors import Conflict, NotFound
from ..models import ServiceRecord, ServiceSpec, ServiceStatus
from .db import Database, Executor, Row, now_iso

__all__ = ["Keep", "ServiceRepo", "all_service_records"]


class Keep(enum.Enum):
    """Marks an update argument that leaves its column as it is (None is a value: it clears the column)."""

    KEEP = 0


def _record(row: Row) -> ServiceRecord:
    return ServiceRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        spec=ServiceSpec.model_validate_json(row["spec"]),
        desired_state=row["desired_state"],
        status=row["status"],
        last_error=row["last_error"],
        restarts=row["restarts"],
        crash_times=json.loads(row["crash_times"]),
        breaker_open=bool(row["breaker_open"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def all_service_records(db: Database) -> list[ServiceRecord]:
    """Every tenant's services: for the reconciler and platform counts only, never for a tool."""
    return [_record(r) for r in await db.fetchall("SELECT * FROM services ORDER BY created_at")]


class ServiceRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(self, name: str, spec: ServiceSpec, tx: Executor | None = None) -> ServiceRecord:
        """Record the intent to run a service. Raises: Conflict when the name is taken."""
        ex = tx or self._db
        if await ex.fetchone("SELECT 1 FROM services WHERE tenant_id = ? AND name = ?", (self._tenant, name)):
            raise Conflict(
                f"a service named {name!r} already exists",
                "use update_service or set_env to change it, or delete_service first",
            )
        now = now_iso()
        service_id = "svc_" + uuid.uuid4().hex[:12]
        await ex.execute(
            "INSERT INTO services (id, tenant_id, name, spec, desired_state, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'running', 'deploying', ?, ?)",
            (service_id, self._tenant, name, spec.model_dump_json(), now, now),
        )
        return await self.get(service_id, ex)

    async def get(self, ref: str, tx: Executor | None = None) -> ServiceRecord:
        """Find by name or id. Raises: NotFound."""
        ex = tx or self._db
        row = await ex.fetchone(
            "SELECT * FROM services WHERE tenant_id = ? AND (id = ? OR name = ?)", (self._tenant, ref, ref)
        )
        if row is None:
            raise NotFound(f"no service named {ref!r}", "list_services shows the services you own")
        return _record(row)

    async def all(self) -> list[ServiceRecord]:
        rows = await self._db.fetchall("SELECT * FROM services WHERE tenant_id = ? ORDER BY name", (self._tenant,))
        return [_record(r) for r in rows]

    async def update(
        self,
        service_id: str,
        *,
        status: ServiceStatus | None = None,
        desired_state: str | None = None,
        last_error: str | None | Literal[Keep.KEEP] = Keep.KEEP,
        restarts: int | None = None,
        spec: ServiceSpec | None = None,
        crash_times: list[float] | None = None,
        breaker_open: bool | None = None,
        tx: Executor | None = None,
    ) -> None:
        sets: list[str] = ["updated_at = ?"]
        params: list[object] = [now_iso()]
        for column, value in (
            ("status", status),
            ("desired_state", desired_state),
            ("restarts", restarts),
            ("spec", spec.model_dump_json() if spec is not None else None),
            ("crash_times", json.dumps(crash_times) if crash_times is not None else None),
            ("breaker_open", int(breaker_open) if breaker_open is not None else None),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if last_error is not Keep.KEEP:
            sets.append("last_error = ?")
            params.append(last_error)
        params += [service_id, self._tenant]
        await (tx or self._db).execute(f"UPDATE services SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?", params)

    async def delete(self, service_id: str) -> None:
        await self._db.execute("DELETE FROM services WHERE id = ? AND tenant_id = ?", (service_id, self._tenant))

    async def usage(self, tx: Executor | None = None) -> tuple[int, int, float]:
        """(count, memory_mb, cpus) of services not being deleted."""
        rows = await (tx or self._db).fetchall(
            "SELECT spec FROM services WHERE tenant_id = ? AND desired_state != 'deleted'", (self._tenant,)
        )
        specs = [ServiceSpec.model_validate_json(r["spec"]) for r in rows]
        return len(specs), sum(s.memory_mb for s in specs), sum(s.cpus for s in specs)

    async def any(self) -> bool:
        """Has the tenant a service, in any state (one being deployed or deleted too)?"""
        row = await self._db.fetchone("SELECT 1 FROM services WHERE tenant_id = ? LIMIT 1", (self._tenant,))
        return row is not None

    async def volume_names(self, tx: Executor | None = None) -> set[str]:
        """The volumes the tenant's services mount (those being deleted too: theirs may not be gone yet)."""
        return set(await self.volume_users(tx))

    async def volume_users(self, tx: Executor | None = None) -> dict[str, list[str]]:
        """Each volume the tenant's services mount (those being deleted too) -> the names of those services."""
        rows = await (tx or self._db).fetchall(
            "SELECT name, spec FROM services WHERE tenant_id = ? ORDER BY name", (self._tenant,)
        )
        users: dict[str, list[str]] = {}
        for r in rows:
            for v in ServiceSpec.model_validate_json(r["spec"]).volumes:
                users.setdefault(v.name, []).append(r["name"])
        return users
