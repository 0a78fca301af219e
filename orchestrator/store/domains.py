"""Custom domains, scoped to one tenant. The domain is the table's key, so it belongs to one tenant and one
service at a time: a claim checks and inserts in one ``BEGIN IMMEDIATE`` transaction, and of two tenants
claiming the same name at once, exactly one gets it. A claim that is never proved lapses after a while
(``lapsed_before``), so a tenant cannot hold a domain it does not own by claiming it first."""

from __future__ import annotations

from ..errors import Conflict, NotFound, QuotaExceeded
from ..models import DomainRecord
from .db import Database, Row, now_iso

__all__ = ["DomainRepo", "verified_domains"]


def _record(row: Row) -> DomainRecord:
    return DomainRecord(
        domain=row["domain"],
        tenant_id=row["tenant_id"],
        service_id=row["service_id"],
        token=row["token"],
        status=row["status"],
        created_at=row["created_at"],
        verified_at=row["verified_at"],
    )


async def verified_domains(db: Database) -> list[DomainRecord]:
    """Every tenant's proved domains: for the ingress's routes only, never for a tool."""
    return [_record(r) for r in await db.fetchall("SELECT * FROM domains WHERE status = 'verified' ORDER BY domain")]


class DomainRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def claim(
        self, domain: str, service_id: str, token: str, lapsed_before: str, limit: int
    ) -> tuple[DomainRecord, bool]:
        """The tenant's claim on ``domain`` for ``service_id``: the existing one, or a new pending one with
        ``token``; returns it and whether it is new. Pending claims made before ``lapsed_before`` (an ISO time)
        are gone first, whoever made them.

        Raises: Conflict when another tenant, or another of this tenant's services, holds the domain;
        QuotaExceeded past ``limit`` domains.
        """
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM domains WHERE domain = ? AND status = 'pending' AND created_at < ?",
                (domain, lapsed_before),
            )
            row = await tx.fetchone("SELECT * FROM domains WHERE domain = ?", (domain,))
            if row is not None and row["tenant_id"] != self._tenant:
                raise Conflict(
                    f"domain {domain!r} is claimed by another tenant",
                    "a domain belongs to one tenant at a time; if it is yours, ask an operator"
                    " (a claim never proved lapses on its own)",
                )
            if row is not None and row["service_id"] != service_id:
                other = await tx.fetchone("SELECT name FROM services WHERE id = ?", (row["service_id"],))
                raise Conflict(
                    f"domain {domain!r} is already on your service {other['name'] if other else row['service_id']!r}",
                    "remove_domain it from that service first",
                )
            if row is not None:
                return _record(row), False
            count = await tx.fetchone("SELECT COUNT(*) AS n FROM domains WHERE tenant_id = ?", (self._tenant,))
            if count is not None and count["n"] >= limit:
                raise QuotaExceeded(
                    f"the tenant already has {count['n']} of {limit} domains",
                    "remove_domain the ones you no longer need",
                )
            await tx.execute(
                "INSERT INTO domains (domain, tenant_id, service_id, token, status, created_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?)",
                (domain, self._tenant, service_id, token, now_iso()),
            )
            row = await tx.fetchone("SELECT * FROM domains WHERE domain = ?", (domain,))
            assert row is not None
            return _record(row), True

    async def verified(self, domain: str) -> DomainRecord:
        """Mark the tenant's claim on ``domain`` proved. Raises: NotFound when it is gone (removed meanwhile)."""
        await self._db.execute(
            "UPDATE domains SET status = 'verified', verified_at = ? WHERE domain = ? AND tenant_id = ?",
            (now_iso(), domain, self._tenant),
        )
        row = await self._db.fetchone(
            "SELECT * FROM domains WHERE domain = ? AND tenant_id = ?", (domain, self._tenant)
        )
        if row is None:
            raise NotFound(f"domain {domain!r} was removed meanwhile", "add_domain it again")
        return _record(row)

    async def all(self, service_id: str | None = None) -> list[DomainRecord]:
        if service_id is None:
            rows = await self._db.fetchall("SELECT * FROM domains WHERE tenant_id = ? ORDER BY domain", (self._tenant,))
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM domains WHERE tenant_id = ? AND service_id = ? ORDER BY domain",
                (self._tenant, service_id),
            )
        return [_record(r) for r in rows]

    async def remove(self, domain: str, service_id: str) -> None:
        """Raises: NotFound when the service has no such domain."""
        removed = await self._db.execute(
            "DELETE FROM domains WHERE domain = ? AND tenant_id = ? AND service_id = ?",
            (domain, self._tenant, service_id),
        )
        if not removed:
            raise NotFound(f"domain {domain!r} is not on this service", "list_domains shows your domains")
