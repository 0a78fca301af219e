"""What the database tools return: a database, its connection strings, and a link to a service."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..models import DatabaseStatus, Engine, ServiceStatus

__all__ = ["ConnectionInfo", "Database", "DatabaseLink", "DatabaseList", "LinkResult"]


class DatabaseLink(BaseModel):
    service: str
    env_var: str


class Database(BaseModel):
    id: str
    name: str
    engine: Engine
    status: DatabaseStatus
    url: str = Field(
        description="for your services: host is the database name on your private network; password masked"
    )
    external_url: str | None = Field(None, description="via 127.0.0.1 on this host, password masked")
    memory_mb: int
    linked_services: list[DatabaseLink] = []
    last_error: str | None = None
    created_at: datetime


class DatabaseList(BaseModel):
    databases: list[Database]


class ConnectionInfo(BaseModel):
    url: str = Field(description="for services on your private network (what link_database injects)")
    external_url: str | None = Field(None, description="for clients on this host, via 127.0.0.1")
    env_var: str = Field(description="the env var link_database sets by default")
    revealed: bool


class LinkResult(BaseModel):
    database: str
    service: str
    env_var: str
    linked: bool
    service_status: ServiceStatus
