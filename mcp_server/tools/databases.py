"""Databases: managed Postgres and Redis, their connection strings, and links to services."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.databases import CreateDatabaseRequest
from orchestrator.models import ConnectionInfo, Database, DatabaseList, Deleted, LinkResult, ResourceName

from ..registry import Call, tool
from .args import Confirm, DatabaseRef, ServiceRef, Wait

EngineArg = Annotated[
    str, Field(description="'postgres' or 'redis'", json_schema_extra={"enum": ["postgres", "redis"]})
]
EnvVarArg = Annotated[
    str | None, Field(max_length=128, description="env var to set; default DATABASE_URL (postgres) or REDIS_URL")
]


@tool(title="Create database")
async def create_database(
    call: Call,
    name: ResourceName,
    engine: EngineArg,
    memory_mb: Annotated[int | None, Field(ge=32, le=65536, description="default 256")] = None,
    cpus: Annotated[float | None, Field(gt=0, le=64)] = None,
    wait: Wait = True,
    wait_timeout_s: Annotated[float | None, Field(gt=0, le=600, description="default 45")] = None,
) -> Database:
    """Create a Postgres or Redis database with generated credentials (encrypted at rest, password auth
    required), its data on a volume, gVisor-sandboxed. With wait=true returns once it accepts connections
    (status running); past the wait it returns status creating: poll get_database. Use link_database to hand
    its connection string to a service."""
    await call.platform.check_disk()
    req = CreateDatabaseRequest(
        name=name, engine=engine, memory_mb=memory_mb, cpus=cpus, wait=wait, wait_timeout_s=wait_timeout_s
    )
    return await call.platform.databases.create(call.principal, req, call.report)


@tool(read_only=True, title="List databases")
async def list_databases(call: Call) -> DatabaseList:
    """Your databases with engine, status, host name on your private network and linked services."""
    return DatabaseList(databases=await call.platform.databases.list_databases(call.principal))


@tool(read_only=True, title="Get database")
async def get_database(call: Call, database: DatabaseRef) -> Database:
    """One database's status, connection details (password masked), limits, links and last error."""
    return await call.platform.databases.get(call.principal, database)


@tool(read_only=True, title="Database connection string")
async def database_connection_string(
    call: Call, database: DatabaseRef, reveal: Annotated[bool, Field(description="show the password")] = False
) -> ConnectionInfo:
    """The connection URL for services on your private network, and one via 127.0.0.1 for this host.
    The password is masked unless reveal=true; link_database injects it without showing it."""
    return await call.platform.databases.connection(call.principal, database, reveal)


@tool(title="Link database to service")
async def link_database(
    call: Call, database: DatabaseRef, service: ServiceRef, env_var: EnvVarArg = None, wait: Wait = True
) -> LinkResult:
    """Inject the database's connection string into a service's env (DATABASE_URL or REDIS_URL by default)
    and redeploy the service. The value follows the database (it is not a copy in the service's env)."""
    return await call.platform.databases.link(call.principal, database, service, env_var, wait, call.report)


@tool(title="Unlink database from service")
async def unlink_database(call: Call, database: DatabaseRef, service: ServiceRef, wait: Wait = True) -> LinkResult:
    """Remove a database's connection string from a service's env and redeploy the service."""
    return await call.platform.databases.unlink(call.principal, database, service, wait, call.report)


@tool(destructive=True, title="Delete database")
async def delete_database(call: Call, database: DatabaseRef, confirm: Confirm = False) -> Deleted:
    """Delete a database: its container, its data volume with all data, and its credentials; linked services
    lose the env var and are redeployed. Backups are kept."""
    databases = call.platform.databases
    await call.confirm(confirm, await databases.describe_delete(call.principal, database))
    return await databases.delete(call.principal, database)
