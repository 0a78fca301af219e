"""DNS names as the settings and the ingress take them: labels, domains in punycode, resolver addresses.
Pure functions: no other module of orchestrator is imported here."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_dns_label", "normalize_domain", "parse_resolver"]


def parse_resolver(value: str) -> tuple[str, int]:
    """A DNS resolver's address, ``IP`` or ``IP:port`` (``[IPv6]:port``); the port defaults to 53.

    Raises: ValueError saying what is expected.
    """
    text = value.strip()
    host, _, port = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else (text, "", "")
    host = host.removeprefix("[").removesuffix("]") if host else text
    try:
        address = ipaddress.ip_address(host)
        number = int(port) if port else 53
    except ValueError:
        raise ValueError(f"{value!r} is not a resolver address: give IP or IP:port, e.g. 127.0.0.1:5353") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{value!r}: the port must be 1 to 65535")
    return str(address), number


_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def is_dns_label(label: str) -> bool:
    """Lowercase letters, digits and hyphens, 1 to 63, no hyphen at either end, and no ``--`` at positions 3-4
    unless it is punycode (``xn--``): IDNA reserves those."""
    if not _DNS_LABEL.fullmatch(label):
        return False
    return label[2:4] != "--" or label.startswith("xn--")


def normalize_domain(domain: str) -> str:
    """``domain`` in lowercase ASCII: internationalised labels in punycode, no trailing dot.

    Raises: ValueError when it is not a valid DNS name, or leaves no room for a 63-character label under it.
    """
    labels = domain.strip().rstrip(".").lower().split(".")
    try:
        labels = [label if label.isascii() else label.encode("idna").decode("ascii") for label in labels]
    except UnicodeError as exc:
        raise ValueError(f"{domain!r} is not a valid domain name ({exc})") from None
    if bad := [label for label in labels if not is_dns_label(label)]:
        raise ValueError(f"{bad[0]!r} is not a DNS label: letters, digits and inner hyphens, 1 to 63 characters")
    ascii_domain = ".".join(labels)
    if len(ascii_domain) + 64 > 253:
        raise ValueError(f"{ascii_domain!r} is too long to hold a service's label (253 characters in all)")
    return ascii_domain
