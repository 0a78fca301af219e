"""SQLite state. Every repository a tool can reach is bound to one tenant when it is built."""

from __future__ import annotations

from pathlib import Path

from ..secrets import SecretBox
from .api_keys import ApiKeyRepo, KeyLookup
from .audit import AuditRepo, audit_page, expire_audit
from .backups import BackupRepo
from .builds import BuildRepo, builds_with_leftovers, cancel_requested, touch_builds, unfinished_builds
from .databases import DatabaseRepo, DatabaseSecrets, all_database_records
from .db import Database, Tx, now_iso
from .domains import DomainRepo, verified_domains
from .env import EnvRepo
from .events import EventRepo, expire_events
from .idempotency import Earlier, IdempotencyRepo, expire_idempotency
from .moves import MoveRepo
from .oauth import OAuthRepo
from .revisions import RevisionRepo
from .sandboxes import PoolRepo, SandboxRecord, SandboxRepo, all_sandbox_records
from .services import ServiceRepo, all_service_records
from .tenants import TenantRepo

__all__ = [
    "Database",
    "DatabaseSecrets",
    "Earlier",
    "SandboxRecord",
    "Store",
    "TenantStore",
    "Tx",
    "all_database_records",
    "all_sandbox_records",
    "all_service_records",
    "audit_page",
    "builds_with_leftovers",
    "cancel_requested",
    "expire_audit",
    "expire_events",
    "expire_idempotency",
    "now_iso",
    "touch_builds",
    "unfinished_builds",
    "verified_domains",
]


class TenantStore:
    """The repositories of one tenant: every query they run carries its tenant id."""

    def __init__(self, db: Database, tenant_id: str, secrets: SecretBox) -> None:
        self.tenant_id = tenant_id
        self.services = ServiceRepo(db, tenant_id)
        self.env = EnvRepo(db, tenant_id, secrets.for_tenant(tenant_id))
        self.revisions = RevisionRepo(db, tenant_id, secrets.for_tenant(tenant_id))
        self.api_keys = ApiKeyRepo(db, tenant_id)
        self.audit = AuditRepo(db, tenant_id)
        self.events = EventRepo(db, tenant_id)
        self.idempotency = IdempotencyRepo(db, tenant_id)
        self.sandboxes = SandboxRepo(db, tenant_id)
        self.builds = BuildRepo(db, tenant_id)
        self.databases = DatabaseRepo(db, tenant_id, secrets.for_tenant(tenant_id))
        self.backups = BackupRepo(db, tenant_id, secrets.for_tenant(tenant_id))
        self.domains = DomainRepo(db, tenant_id)


class Store:
    def __init__(self, db: Database, secrets: SecretBox) -> None:
        self.db = db
        self.secrets = secrets
        self.tenants = TenantRepo(db)
        self.keys = KeyLookup(db)
        self.pool = PoolRepo(db)
        self.moves = MoveRepo(db)
        self.oauth = OAuthRepo(db, secrets.for_tenant("oauth:clients"))
        self._scoped: dict[str, TenantStore] = {}

    @classmethod
    async def open(cls, path: Path, secrets: SecretBox) -> Store:
        return cls(await Database.open(path), secrets)

    async def close(self) -> None:
        await self.db.close()

    def scoped(self, tenant_id: str) -> TenantStore:
        # The repositories hold nothing but the tenant's id and handles: made once per tenant, not on every call
        # (a tool call asks for them several times; making them showed in the server's profile under load).
        found = self._scoped.get(tenant_id)
        if found is None:
            found = self._scoped[tenant_id] = TenantStore(self.db, tenant_id, self.secrets)
        return found
