"""The ingress's settings (orchestrator/ingress/): part of ``Settings``, each also an ``AGENTHOST_<NAME>``
environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from .dnsnames import normalize_domain, parse_resolver

__all__ = ["IngressSettings"]


class IngressSettings(BaseModel):
    # Caddy in front of every service with a port, programmed over its admin socket.
    ingress: bool = Field(True, description="route https://<service>-<tenant>.<base domain> through Caddy")
    base_domain: str | None = Field(None, description="services answer under it; unset: <label>.localhost")
    ingress_http_port: int = Field(80, ge=1, le=65535, description="Caddy's HTTP port (redirects to HTTPS)")
    ingress_https_port: int = Field(443, ge=1, le=65535, description="Caddy's HTTPS port")
    ingress_bind: str = Field("", description="the address Caddy listens on; empty: every address")
    ingress_admin_socket: Path | None = Field(None, description="Caddy's admin socket; default in the data dir")
    ingress_internal_ca: bool = Field(
        False, description="certificates from Caddy's own CA, not ACME (always without base_domain)"
    )
    ingress_acme_email: str | None = Field(None, description="the ACME account's email")
    ingress_acme_ca: str | None = Field(
        None, description="the ACME directory URL; unset: Caddy's default (Let's Encrypt)"
    )
    ingress_acme_ca_root: Path | None = Field(None, description="PEM root the ACME directory's HTTPS chains to")
    ingress_drain_s: float = Field(2.0, ge=0, le=60, description="seconds a replaced container serves on")
    ingress_on_demand_tls: bool = Field(
        False, description="ACME certificates at the first handshake, for routed hosts only"
    )
    caddy_bin: str = "caddy"
    # Custom domains (orchestrator/ingress/domains.py): ownership proved by a DNS TXT record first.
    dns_resolver: str | None = Field(
        None, description="IP[:port] of the resolver that checks domains' TXT records; unset: the system's"
    )
    domain_claim_ttl_s: float = Field(
        72 * 3600.0, gt=0, description="an add_domain claim never proved lapses after this (another tenant may claim)"
    )

    @field_validator("dns_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if not value:
            return None
        host, port = parse_resolver(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("base_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return normalize_domain(value) if value else None

    @property
    def ingress_domain(self) -> str:
        """The domain services answer under: base_domain, or localhost on a host without one."""
        return self.base_domain or "localhost"

    @property
    def ingress_uses_internal_ca(self) -> bool:
        return self.ingress_internal_ca or self.base_domain is None
