"""Host names of routed services: ``<service>-<tenant>.<base domain>``, always a valid DNS name.

A service's label is ``<service>-<tenant>`` when that is unambiguous: a plain service name (a letter,
then letters, digits and single hyphens) and a plain tenant name (a letter, then letters and digits,
no hyphen), 63 characters at most together. The tenant is then the label's last hyphen-separated part,
so two different (service, tenant) pairs never share a label. Any other pair (a tenant name with a
hyphen or outside ASCII, a name too long) gets ``<service>-<tenant>-0<digest>``: readable prefixes,
cut and cleaned, and 48 bits of SHA-256 of the exact pair. Its last part starts with a digit, which a
plain tenant name never does, so the two forms never meet.

Domains are stored and shown in their ASCII (punycode) form.
"""

from __future__ import annotations

import hashlib
import re

from ..settings import is_dns_label, normalize_domain

__all__ = ["MAX_LABEL", "is_dns_label", "normalize_domain", "service_host", "service_label"]

MAX_LABEL = 63
_PLAIN_SERVICE = re.compile(r"[a-z](-?[a-z0-9])*")
_PLAIN_TENANT = re.compile(r"[a-z][a-z0-9]*")
_PREFIX = 20


def _slug(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return cleaned[:_PREFIX].strip("-")


def service_label(service: str, tenant: str) -> str:
    """The DNS label of ``service`` of tenant ``tenant`` (names as stored)."""
    plain = f"{service}-{tenant}"
    if (
        _PLAIN_SERVICE.fullmatch(service)
        and _PLAIN_TENANT.fullmatch(tenant)
        and len(plain) <= MAX_LABEL
        and is_dns_label(plain)
    ):
        return plain
    digest = hashlib.sha256(f"{service}\0{tenant}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return "-".join([part for part in (_slug(service), _slug(tenant)) if part] + [f"0{digest}"])


def service_host(service: str, tenant: str, base_domain: str) -> str:
    """The host name a service answers at: its label under ``base_domain`` (already normalised)."""
    return f"{service_label(service, tenant)}.{base_domain}"
