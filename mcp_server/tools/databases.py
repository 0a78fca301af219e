"""Databases: managed Postgres and Redis, their connection strings, and links to services."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from orchestrator.databases import ConnectionInfo, CreateDatabaseRequest, Database, DatabaseList, LinkResult
from orchestrator.models import Deleted, ResourceName

from ..registry import Call, tool
from .args import Confirm, DatabaseRef, ServiceRef, Wait


@tool(title="Create database")
async def create_database(
    call: Call,
    name: ResourceName,
    engine: Annotated[str, Field(json_schema_extra={"enum": ["postgres", "redis"]})],
    memory_mb: Annotated[int | None, Field(ge=32, le=65536, description="default 256")] = None,
    wait: Wait = True,
) -> Database:
    """Postgres or Redis with generated credentials (password required) and its data on a volume.
    wait=true returns once it accepts connections; past the bounded wait, poll get_database."""
    await call.platform.status.check_disk()
    req = CreateDatabaseRequest(name=name, engine=engine, memory_mb=memory_mb, wait=wait)
    return await call.platform.databases.create(call.principal, req, call.report)


@tool(read_only=True, title="List databases")
async def list_databases(call: Call) -> DatabaseList:
    """Your databases: status, connection URL (password masked), linked services."""
    return DatabaseList(databases=await call.platform.databases.list_databases(call.principal))


@tool(read_only=True, title="Get database")
async def get_database(call: Call, database: DatabaseRef) -> Database:
    """One database's status, connection URL (password masked), links and last error."""
    return await call.platform.databases.get(call.principal, database)


@tool(read_only=True, title="Database connection string")
async def database_connection_string(call: Call, database: DatabaseRef, reveal: bool = False) -> ConnectionInfo:
    """The database's URLs for your services and for this host; the password shows only with reveal=true."""
    return await call.platform.databases.connection(call.principal, database, reveal)


@tool(destructive=True, title="Link database")
async def link_database(
    call: Call,
    database: DatabaseRef,
    service: ServiceRef,
    env_var: Annotated[str | None, Field(max_length=128, description="default DATABASE_URL or REDIS_URL")] = None,
    unlink: bool = False,
    wait: Wait = True,
) -> LinkResult:
    """Put the database's connection string in a service's env (or take it out: unlink=true) and redeploy it."""
    databases = call.platform.databases
    if unlink:
        return await databases.unlink(call.principal, database, service, wait, call.report)
    return await databases.link(call.principal, database, service, env_var, wait, call.report)


async def _ask_delete(call: Call, database: str, **_: Any) -> str:
    return await call.platform.databases.describe_delete(call.principal, database)


@tool(destructive=True, idempotent=True, title="Delete database", ask=_ask_delete)
async def delete_database(call: Call, database: DatabaseRef, confirm: Confirm = False) -> Deleted:
    """Delete a database with all its data and credentials; linked services are redeployed without it.
    Backups are kept."""
    return await call.platform.databases.delete(call.principal, database)
