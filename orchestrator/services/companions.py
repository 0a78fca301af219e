"""What other use-cases add to a service, given to the ServiceManager at construction (platform.py).

- ``ServiceLinks``: env a service gets from elsewhere (linked databases' connection strings) and the
  secrets in it, masked in the service's output like its own env.
- ``ServiceRoutes``: the service's public address (the ingress), which follows its container, and its traffic.
- ``ServiceAccess``: who may reach into a service (SSH keys): its checks of a new service's spec.
"""

from __future__ import annotations

from typing import Literal, Protocol

from ..ingress.traffic import Traffic
from ..models import ServiceRecord, ServiceSpec
from ..store import TenantStore
from .requests import DeployRequest

__all__ = ["ServiceAccess", "ServiceEvent", "ServiceLinks", "ServiceRoutes"]

# What just happened to a service's container.
ServiceEvent = Literal["running", "stopped", "removing"]


class ServiceLinks(Protocol):
    async def env(self, ts: TenantStore, rec: ServiceRecord) -> dict[str, str]: ...

    async def secrets(self, ts: TenantStore, rec: ServiceRecord) -> list[str]: ...


class ServiceAccess(Protocol):
    def check_spec(self, req: DeployRequest, spec: ServiceSpec) -> ServiceSpec:
        """The spec of a new service, checked and completed before it is recorded. Raises: InvalidInput."""
        ...


class ServiceRoutes(Protocol):
    async def public_url(self, ts: TenantStore, rec: ServiceRecord) -> str | None:
        """The service's stable public address, or None when it has no route."""
        ...

    async def traffic(self, ts: TenantStore, rec: ServiceRecord) -> Traffic | None:
        """Requests that reached the service's routes lately, or None when it has no route."""
        ...

    async def follow(self, ts: TenantStore, rec: ServiceRecord, event: ServiceEvent) -> None:
        """After the service's container started, stopped or was recreated, or before it is removed."""
        ...
