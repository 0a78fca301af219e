"""Managed Postgres and Redis: the use-cases (manager) and what they return (models), what differs
between the engines (engines), the tenant's own user inside them (roles), readiness and crash reports
(health), and what a linked service gets (links)."""

from .links import DatabaseLinks
from .manager import CreateDatabaseRequest, DatabaseManager
from .models import ConnectionInfo, Database, DatabaseLink, DatabaseList, LinkResult

__all__ = [
    "ConnectionInfo",
    "CreateDatabaseRequest",
    "Database",
    "DatabaseLink",
    "DatabaseLinks",
    "DatabaseList",
    "DatabaseManager",
    "LinkResult",
]
