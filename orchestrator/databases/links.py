"""What a linked database hands a service: its connection string as an env var, and the password in it.

``link_database`` records a link; the service's env is then the tenant's own values plus one
connection string per linked database, and that database's password is masked in the service's
output like its own env (``ServiceManager`` asks through ``services.ServiceLinks``).
"""

from __future__ import annotations

from ..models import ServiceRecord
from ..store import TenantStore
from .engines import connection_url

__all__ = ["DatabaseLinks"]


class DatabaseLinks:
    async def env(self, ts: TenantStore, rec: ServiceRecord) -> dict[str, str]:
        """The connection strings of the databases linked to a service."""
        env: dict[str, str] = {}
        for link in await ts.databases.links_of_service(rec.id):
            db = await ts.databases.get(link.database_id)
            password = await ts.databases.password(db.id)
            env[link.env_var] = connection_url(db.engine, db.spec, password, db.name, db.spec.port)
        return env

    async def secrets(self, ts: TenantStore, rec: ServiceRecord) -> list[str]:
        """The passwords a linked service knows, to mask in its output."""
        return [await ts.databases.password(link.database_id) for link in await ts.databases.links_of_service(rec.id)]
