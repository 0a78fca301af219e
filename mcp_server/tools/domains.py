"""Custom domains: a tenant's own host names, routed to its services once DNS proves it owns them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.ingress import Domain, DomainList
from orchestrator.models import Deleted

from ..registry import Call, tool
from .args import ServiceRef

DomainName = Annotated[str, Field(min_length=1, max_length=253, description="a host name, e.g. shop.example.com")]


@tool(idempotent=True, open_world=True, title="Add domain")
async def add_domain(call: Call, service: ServiceRef, domain: DomainName) -> Domain:
    """Route a domain you own to a service over HTTPS. First call: status pending and the TXT record to
    publish; call again once DNS serves it: verified, the route is live (not yet: domain_not_verified)."""
    return await call.platform.domains.add(call.principal, service, domain)


@tool(read_only=True, title="List domains")
async def list_domains(call: Call, service: ServiceRef | None = None) -> DomainList:
    """Your domains (of one service, or all), verified or pending with the TXT record still to publish."""
    return await call.platform.domains.list(call.principal, service)


@tool(destructive=True, title="Remove domain")
async def remove_domain(call: Call, service: ServiceRef, domain: DomainName) -> Deleted:
    """Remove a domain from a service: its route goes at once, and adding it again needs a new proof."""
    return await call.platform.domains.remove(call.principal, service, domain)
