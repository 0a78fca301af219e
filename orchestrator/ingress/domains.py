"""Custom domains (``add_domain``, ``list_domains``, ``remove_domain``): a tenant routes a domain it owns to
one of its services, over HTTPS like the service's own host.

Ownership is proved by DNS before any route exists. The first ``add_domain`` records a pending claim with a
random token and answers with the TXT record to publish (``_agenthost-challenge.<domain>`` = the token);
a later ``add_domain`` of the same domain and service looks the record up (``ownership.py``) and, when it
holds the token, marks the claim verified and reloads Caddy, whose routes (``manager.py``) include every
verified domain of a routed service. Not proved: ``domain_not_verified``, naming the record and what DNS
answered. A domain is one row keyed by its name, so it belongs to one tenant at a time: another tenant's
claim, pending or verified, is ``conflict``; a pending claim lapses after ``domain_claim_ttl_s``, so a
tenant cannot squat on a name it cannot prove. A deleted service's domains go with its record.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import DomainNotVerified, IngressUnavailable, InvalidInput, NotSupported
from ..models import Deleted, DomainRecord, Principal
from ..settings import Settings
from ..store import Store
from .hosts import challenge_name, custom_domain
from .manager import IngressManager
from .ownership import lookup_txt

__all__ = ["Domain", "DomainList", "DomainManager", "TxtRecord"]

log = logging.getLogger(__name__)

_DNS_TIMEOUT_S = 5.0  # one ownership check, retries at the resolver included: well inside a tool call's time


class TxtRecord(BaseModel):
    type: Literal["TXT"] = "TXT"
    name: str
    value: str


class Domain(BaseModel):
    domain: str = Field(description="as stored and routed: lowercase ASCII, IDN in punycode")
    service: str
    status: Literal["pending", "verified"]
    url: str | None = Field(None, description="its HTTPS address, once verified")
    publish: TxtRecord | None = Field(None, description="while pending: the DNS record that proves ownership")
    expires_at: str | None = Field(None, description="while pending: when the unproved claim lapses")
    next_step: str


class DomainList(BaseModel):
    domains: list[Domain]


def _lapse(created_at: str, ttl_s: float) -> str:
    return (datetime.fromisoformat(created_at) + timedelta(seconds=ttl_s)).isoformat(timespec="milliseconds")


class DomainManager:
    def __init__(self, settings: Settings, store: Store, ingress: IngressManager) -> None:
        self.settings = settings
        self.store = store
        self.ingress = ingress

    def _view(self, rec: DomainRecord, service: str) -> Domain:
        if rec.status == "verified":
            return Domain(
                domain=rec.domain,
                service=service,
                status="verified",
                url=self.ingress.url(rec.domain),
                next_step=f"point {rec.domain}'s A/AAAA (or CNAME) records at this platform's proxy",
            )
        record = TxtRecord(name=challenge_name(rec.domain), value=rec.token)
        return Domain(
            domain=rec.domain,
            service=service,
            status="pending",
            publish=record,
            expires_at=_lapse(rec.created_at, self.settings.domain_claim_ttl_s),
            next_step=f"publish the TXT record {record.name} with the value {record.value}, then call add_domain"
            " again: the route goes live once DNS serves it",
        )

    def _name(self, domain: str) -> str:
        return custom_domain(domain, self.settings.ingress_domain)

    async def add(self, p: Principal, service: str, domain: str) -> Domain:
        """Claim ``domain`` for ``service``, or prove a pending claim and route it.

        Raises: InvalidInput (a bad name, a service without a route), NotFound, Conflict (another tenant's or
        another service's), QuotaExceeded, DomainNotVerified, NotSupported (the proxy is off).
        """
        name = self._name(domain)
        if not self.settings.ingress:
            raise NotSupported("this platform routes no HTTPS traffic (AGENTHOST_INGRESS is off)")
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(service)
        if self.ingress.host(rec, p.tenant_name) is None:
            raise InvalidInput(
                f"service {rec.name!r} has no HTTPS route: it has no port or is not public",
                "update_service it with a port and public=true first",
            )
        lapsed_before = (datetime.now(UTC) - timedelta(seconds=self.settings.domain_claim_ttl_s)).isoformat(
            timespec="milliseconds"
        )
        limit = (await self.store.tenants.get(p.tenant_id)).quotas.max_domains
        claim, new = await ts.domains.claim(name, rec.id, secrets.token_hex(20), lapsed_before, limit)
        if claim.status == "pending" and not new:
            found = await lookup_txt(name, self.settings.dns_resolver, _DNS_TIMEOUT_S)
            if not found.proves(claim.token):
                raise DomainNotVerified(
                    f"ownership of {name} is not proved: the TXT record {found.name} must hold {claim.token!r},"
                    f" and DNS says {found.describe()}",
                    f"publish TXT {found.name} = {claim.token}, wait until DNS serves it (its TTL, if it was"
                    " looked up before), then call add_domain again",
                )
            claim = await ts.domains.verified(name)
            await self._sync(f"domain {name} verified")
        return self._view(claim, rec.name)

    async def list(self, p: Principal, service: str | None = None) -> DomainList:
        """Raises: NotFound (no such service)."""
        ts = self.store.scoped(p.tenant_id)
        names = {rec.id: rec.name for rec in await ts.services.all()}
        service_id = (await ts.services.get(service)).id if service is not None else None
        claims = await ts.domains.all(service_id)
        return DomainList(domains=[self._view(d, names.get(d.service_id, "")) for d in claims])

    async def remove(self, p: Principal, service: str, domain: str) -> Deleted:
        """Raises: NotFound (no such service, or the domain is not on it)."""
        try:
            name = self._name(domain)
        except InvalidInput:
            name = domain.strip().lower()  # a name stored before the rules changed is still removable
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.services.get(service)
        await ts.domains.remove(name, rec.id)
        await self._sync(f"domain {name} removed")
        return Deleted(kind="domain", name=name, id=name, removed=[f"the claim on {name} and its route"])

    async def _sync(self, why: str) -> None:
        # The store is the truth: a proxy that is down gets the routes at the reconciler's next pass.
        try:
            await self.ingress.sync()
        except IngressUnavailable as exc:
            log.warning("routes not updated after %s: %s", why, exc.message)
