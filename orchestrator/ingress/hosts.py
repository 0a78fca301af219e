"""Host names of routed services: ``<service>-<tenant>.<base domain>``, always a valid DNS name.

A service's label is ``<service>-<tenant>`` when that is unambiguous: a plain service name (a letter,
then letters, digits and single hyphens) and a plain tenant name (a letter, then letters and digits,
no hyphen), 63 characters at most together. The tenant is then the label's last hyphen-separated part,
so two different (service, tenant) pairs never share a label. Any other pair (a tenant name with a
hyphen or outside ASCII, a name too long) gets ``<service>-<tenant>-0<digest>``: readable prefixes,
cut and cleaned, and 48 bits of SHA-256 of the exact pair. Its last part starts with a digit, which a
plain tenant name never does, so the two forms never meet.

Domains are stored and shown in their ASCII (punycode) form.

A tenant's own domain (``custom_domain``) is one exact host name: IDNA 2008 with UTS 46 mapping (so
uppercase and full-width forms fold, and an internationalised name becomes punycode, which is what is
stored and shown: ``аpple.com`` with a Cyrillic ``а`` is ``xn--pple-43d.com`` everywhere). Refused: a
wildcard, a port, path or any character outside a host name, a trailing dot, an IP literal or a numeric
top-level label, a single label, ``localhost`` and the names under it, and the platform's own domain
and every name under it (those are its services' hosts).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

import idna

from ..dnsnames import is_dns_label, normalize_domain
from ..errors import InvalidInput

__all__ = [
    "CHALLENGE_LABEL",
    "MAX_LABEL",
    "challenge_name",
    "custom_domain",
    "is_dns_label",
    "normalize_domain",
    "service_host",
    "service_label",
]

CHALLENGE_LABEL = "_agenthost-challenge"
# The TXT record's name, _agenthost-challenge.<domain>, must itself be a DNS name (253 characters at most).
MAX_DOMAIN = 253 - len(CHALLENGE_LABEL) - 1
_DOMAIN_HINT = "give one host name you own, such as shop.example.com (no wildcard, scheme, port, path or trailing dot)"

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


def challenge_name(domain: str) -> str:
    """The DNS name whose TXT record proves ownership of ``domain``."""
    return f"{CHALLENGE_LABEL}.{domain}"


def _refuse(domain: str, why: str, hint: str = _DOMAIN_HINT) -> InvalidInput:
    return InvalidInput(f"domain {domain!r} {why}", hint)


def custom_domain(domain: str, platform_domain: str) -> str:
    """A tenant's domain in the form stored and shown: lowercase ASCII, internationalised labels in punycode.

    Raises: InvalidInput saying what is wrong with it.
    """
    if not domain or any(not ch.isprintable() or ch.isspace() for ch in domain):
        raise _refuse(domain, "is empty or holds spaces or control characters")
    if "*" in domain:
        raise _refuse(domain, "is a wildcard: each host name is added, and proved, on its own")
    if domain.endswith((".", "。", "．", "｡")):
        raise _refuse(domain, "ends with a dot: write it without the trailing dot")
    try:
        ipaddress.ip_address(domain.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    else:
        raise _refuse(domain, "is an IP address: only host names get routes")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise _refuse(domain, f"is not a valid host name ({exc})") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise _refuse(ascii_domain, "is a single label: give a full name such as shop.example.com")
    if labels[-1].isdigit():
        raise _refuse(ascii_domain, "looks like an IP address (its last label is a number)")
    if bad := [label for label in labels if not is_dns_label(label)]:
        raise _refuse(ascii_domain, f"has the label {bad[0]!r}: letters, digits and inner hyphens only")
    if len(ascii_domain) > MAX_DOMAIN:
        raise _refuse(ascii_domain, f"is longer than {MAX_DOMAIN} characters (its TXT record's name must fit DNS)")
    for reserved in ("localhost", platform_domain):
        if ascii_domain == reserved or ascii_domain.endswith("." + reserved):
            raise _refuse(
                ascii_domain,
                f"is {reserved} or under it: those names are the platform's own",
                "use a domain you own; your services already answer at their url",
            )
    return ascii_domain
