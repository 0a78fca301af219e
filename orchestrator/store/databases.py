"""Database records, their encrypted passwords and their links to services, always scoped to one tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from ..errors import Conflict, NotFound
from ..models import DatabaseRecord, DatabaseSpec, DatabaseStatus, Engine
from ..secrets import TenantCipher
from .db import Database, Executor, Row, now_iso
from .services import Keep

__all__ = ["DatabaseRepo", "DatabaseSecrets", "StoredLink", "all_database_records"]


def _record(row: Row) -> DatabaseRecord:
    return DatabaseRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        engine=row["engine"],
        spec=DatabaseSpec.model_validate_json(row["spec"]),
        desired_state=row["desired_state"],
        status=row["status"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def all_database_records(db: Database) -> list[DatabaseRecord]:
    """Every tenant's databases: for the reconciler and platform counts only, never for a tool."""
    return [_record(r) for r in await db.fetchall("SELECT * FROM databases ORDER BY created_at")]


@dataclass(frozen=True)
class DatabaseSecrets:
    password: str  # the tenant's
    admin_password: str | None  # the superuser's; None in records made before tenants had users of their own

    @property
    def superuser(self) -> str:
        """The password the control plane signs in with (in an old record, the tenant's user is the superuser)."""
        return self.admin_password or self.password

    @property
    def all(self) -> list[str]:
        """Every password, for masking."""
        return [self.password] + ([self.admin_password] if self.admin_password else [])


class StoredLink:
    def __init__(self, row: Row) -> None:
        self.database_id: str = row["database_id"]
        self.service_id: str = row["service_id"]
        self.env_var: str = row["env_var"]


class DatabaseRepo:
    def __init__(self, db: Database, tenant_id: str, cipher: TenantCipher) -> None:
        self._db = db
        self._tenant = tenant_id
        self._cipher = cipher

    def _aad(self, database_id: str, field: str = "password") -> str:
        return f"db:{self._tenant}:{database_id}:{field}"

    async def insert(
        self,
        name: str,
        engine: Engine,
        spec: DatabaseSpec,
        passwords: tuple[str, str],
        database_id: str,
        tx: Executor,
    ) -> DatabaseRecord:
        """Record the intent to run a database; ``passwords`` are the tenant's and the superuser's.

        Raises: Conflict when the name is taken."""
        if await tx.fetchone("SELECT 1 FROM databases WHERE tenant_id = ? AND name = ?", (self._tenant, name)):
            raise Conflict(f"a database named {name!r} already exists", "pick another name or use that database")
        now = now_iso()
        password, admin_password = passwords
        await tx.execute(
            "INSERT INTO databases (id, tenant_id, name, engine, spec, password, admin_password, desired_state,"
            " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', 'creating', ?, ?)",
            (
                database_id,
                self._tenant,
                name,
                engine,
                spec.model_dump_json(),
                self._cipher.encrypt_str(password, self._aad(database_id)),
                self._cipher.encrypt_str(admin_password, self._aad(database_id, "admin_password")),
                now,
                now,
            ),
        )
        return await self.get(database_id, tx)

    @staticmethod
    def new_id() -> str:
        return "db_" + uuid.uuid4().hex[:12]

    async def get(self, ref: str, tx: Executor | None = None) -> DatabaseRecord:
        """Find by name or id. Raises: NotFound."""
        ex = tx or self._db
        row = await ex.fetchone(
            "SELECT * FROM databases WHERE tenant_id = ? AND (id = ? OR name = ?)", (self._tenant, ref, ref)
        )
        if row is None:
            raise NotFound(f"no database named {ref!r}", "list_databases shows the databases you own")
        return _record(row)

    async def find(self, ref: str) -> DatabaseRecord | None:
        try:
            return await self.get(ref)
        except NotFound:
            return None

    async def all(self) -> list[DatabaseRecord]:
        rows = await self._db.fetchall("SELECT * FROM databases WHERE tenant_id = ? ORDER BY name", (self._tenant,))
        return [_record(r) for r in rows]

    async def password(self, database_id: str) -> str:
        """The tenant's password."""
        row = await self._db.fetchone(
            "SELECT password FROM databases WHERE tenant_id = ? AND id = ?", (self._tenant, database_id)
        )
        if row is None:
            raise NotFound(f"no database {database_id!r}")
        return self._cipher.decrypt_str(row["password"], self._aad(database_id))

    async def secrets(self, database_id: str) -> DatabaseSecrets:
        """The tenant's password and the superuser's. Raises: NotFound."""
        row = await self._db.fetchone(
            "SELECT password, admin_password FROM databases WHERE tenant_id = ? AND id = ?",
            (self._tenant, database_id),
        )
        if row is None:
            raise NotFound(f"no database {database_id!r}")
        admin = row["admin_password"]
        return DatabaseSecrets(
            self._cipher.decrypt_str(row["password"], self._aad(database_id)),
            None if admin is None else self._cipher.decrypt_str(admin, self._aad(database_id, "admin_password")),
        )

    async def update(
        self,
        database_id: str,
        *,
        status: DatabaseStatus | None = None,
        desired_state: Literal["running", "deleted"] | None = None,
        last_error: str | None | Literal[Keep.KEEP] = Keep.KEEP,
    ) -> None:
        sets: list[str] = ["updated_at = ?"]
        params: list[object] = [now_iso()]
        if status is not None:
            sets.append("status = ?")
            params.append(status)
        if desired_state is not None:
            sets.append("desired_state = ?")
            params.append(desired_state)
        if last_error is not Keep.KEEP:
            sets.append("last_error = ?")
            params.append(last_error)
        params += [database_id, self._tenant]
        await self._db.execute(f"UPDATE databases SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?", params)

    async def delete(self, database_id: str) -> None:
        await self._db.execute("DELETE FROM databases WHERE id = ? AND tenant_id = ?", (database_id, self._tenant))

    async def any(self) -> bool:
        """Has the tenant a database, in any state (one being created or deleted too)?"""
        row = await self._db.fetchone("SELECT 1 FROM databases WHERE tenant_id = ? LIMIT 1", (self._tenant,))
        return row is not None

    async def usage(self, tx: Executor | None = None) -> tuple[int, int, float]:
        """(count, memory_mb, cpus) of databases not being deleted."""
        rows = await (tx or self._db).fetchall(
            "SELECT spec FROM databases WHERE tenant_id = ? AND desired_state != 'deleted'", (self._tenant,)
        )
        specs = [DatabaseSpec.model_validate_json(r["spec"]) for r in rows]
        return len(specs), sum(s.memory_mb for s in specs), sum(s.cpus for s in specs)

    # -- links ------------------------------------------------------------------------------------

    async def add_link(self, database_id: str, service_id: str, env_var: str) -> None:
        """Raises: Conflict when the service is linked already or uses that env var for another database."""
        async with self._db.transaction() as tx:
            for sql, params, message in (
                (
                    "SELECT env_var FROM database_links WHERE tenant_id = ? AND database_id = ? AND service_id = ?",
                    (self._tenant, database_id, service_id),
                    "this database is already linked to that service",
                ),
                (
                    "SELECT env_var FROM database_links WHERE tenant_id = ? AND service_id = ? AND env_var = ?",
                    (self._tenant, service_id, env_var),
                    f"the service already gets {env_var} from another linked database",
                ),
            ):
                if await tx.fetchone(sql, params):
                    raise Conflict(message, "unlink it first (link_database unlink=true), or pass another env_var")
            await tx.execute(
                "INSERT INTO database_links (tenant_id, database_id, service_id, env_var, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (self._tenant, database_id, service_id, env_var, now_iso()),
            )

    async def remove_link(self, database_id: str, service_id: str) -> bool:
        changed = await self._db.execute(
            "DELETE FROM database_links WHERE tenant_id = ? AND database_id = ? AND service_id = ?",
            (self._tenant, database_id, service_id),
        )
        return changed > 0

    async def links_of_database(self, database_id: str) -> list[StoredLink]:
        rows = await self._db.fetchall(
            "SELECT * FROM database_links WHERE tenant_id = ? AND database_id = ? ORDER BY created_at",
            (self._tenant, database_id),
        )
        return [StoredLink(r) for r in rows]

    async def links_of_service(self, service_id: str) -> list[StoredLink]:
        rows = await self._db.fetchall(
            "SELECT * FROM database_links WHERE tenant_id = ? AND service_id = ? ORDER BY env_var",
            (self._tenant, service_id),
        )
        return [StoredLink(r) for r in rows]
