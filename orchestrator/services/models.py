"""What the service tools return: a service, its summary in listings and lifecycle answers, its env and logs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..ingress.traffic import Traffic
from ..models import RevisionRecord, ServiceConfig, ServiceStatus

__all__ = [
    "EnvList",
    "LogOutput",
    "Revision",
    "RevisionList",
    "RolledBack",
    "Service",
    "ServiceDetail",
    "ServiceList",
    "ServiceSummary",
]


class Service(ServiceConfig):
    id: str
    name: str
    status: ServiceStatus
    url: str | None = Field(None, description="its stable HTTPS address (a port, public=true)")
    internal_url: str | None = Field(None, description="its port on the host, while running")
    env_keys: list[str] = []
    restarts: int = 0
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime


class ServiceDetail(Service):
    """What get_service returns: the service and its request counters from the proxy (null without a route)."""

    traffic: Traffic | None = None


class ServiceSummary(BaseModel):
    """What lifecycle tools and listings return; get_service has the full picture."""

    name: str
    status: ServiceStatus
    url: str | None = None
    internal_url: str | None = None
    image: str
    restarts: int = 0
    last_error: str | None = None

    @classmethod
    def of(cls, service: Service) -> ServiceSummary:
        return cls.model_validate(service.model_dump(include=set(cls.model_fields)))


class ServiceList(BaseModel):
    services: list[ServiceSummary]


class EnvList(BaseModel):
    service: str
    vars: dict[str, str] = Field(description="values masked as '****' unless reveal=true")
    revealed: bool


class LogOutput(BaseModel):
    service: str
    lines: int
    truncated: bool = Field(description="true when older output was cut to stay within the size bound")
    output: str = Field(description="workload output inside an untrusted-data boundary; known secrets masked")
    next_cursor: str | None = None


class Revision(BaseModel):
    number: int
    live: bool
    failed: bool
    cause: str
    created_at: datetime
    image: str
    digest: str | None
    env_version: str

    @classmethod
    def of(cls, rec: RevisionRecord) -> Revision:
        return cls(
            number=rec.number,
            live=rec.live,
            failed=rec.failed,
            cause=rec.cause,
            created_at=rec.created_at,
            image=rec.spec.image,
            digest=rec.image_digest,
            env_version=rec.env_version,
        )


class RevisionList(BaseModel):
    revisions: list[Revision]


class RolledBack(BaseModel):
    service: str
    revision: int
    status: ServiceStatus
