"""Image references as the engine reads them, and the hosts that are this machine in any spelling.

``parse_reference`` follows the grammar of Docker's reference package (domain, path, tag, digest)
and its rule for when the first path component is a registry host (it holds ``.`` or ``:``, is
``localhost``, or has capitals). Anything the engine would resolve as an image id instead of a
name is refused: the engine takes a bare hex string of any length as an id prefix of any image on
the host (``docker image inspect f`` finds one), and ``sha256:<hex>`` likewise.

``is_local_host`` recognises a registry host that reaches this machine however it is written:
``localhost`` (and ``*.localhost``), 127/8 and ``0.0.0.0`` in the forms ``inet_aton`` accepts
(``127.1``, ``2130706433``, ``0177.0.0.1``, ``0x7f.1``), ``[::1]``, ``[::]``, IPv4-mapped and
-compatible IPv6 forms of those, the host's own name and the addresses of its interfaces.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageNotAllowed, InvalidInput

__all__ = [
    "Reference",
    "host_addresses",
    "host_names",
    "inet_aton",
    "is_id_like",
    "is_local_host",
    "parse_reference",
    "split_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?"
)
_ID_LIKE = re.compile(r"[0-9a-f]+|(?i:sha(?:256|384|512)):.*")
_MAX_NAME = 255
_DIGITS = {8: set("01234567"), 10: set("0123456789"), 16: set("0123456789abcdefABCDEF")}
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # connecting to 0.0.0.0 reaches this host


@dataclass(frozen=True)
class Reference:
    """A parsed reference; ``domain`` is lowercased, ``text`` the normalised form (``:latest`` when untagged)."""

    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def text(self) -> str:
        tag = self.tag if self.tag is not None or self.digest is not None else "latest"
        return self.name + (f":{tag}" if tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def parts(self) -> list[str]:
        return self.path.split("/")


def is_id_like(text: str) -> bool:
    """Would the engine take ``text`` for an image id or id prefix (rather than, or besides, a name)?"""
    return _ID_LIKE.fullmatch(text) is not None


def parse_reference(text: str) -> Reference:
    """Raises: ImageNotAllowed for an id-like reference; InvalidInput for one that is not a plain reference."""
    if is_id_like(text):
        raise ImageNotAllowed(f"{text[:19]!r} names an image by id, which could be any image on this host")
    m = _REFERENCE.fullmatch(text) if len(text) <= 2 * _MAX_NAME else None
    if m is None or len(m.group("name")) > _MAX_NAME:
        raise InvalidInput(
            f"{text[:80]!r} is not a valid image reference",
            "write it as [registry/]repository[:tag][@sha256:digest], lowercase, without spaces or variables",
        )
    name = m.group("name")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not ("." in first or ":" in first or first.lower() == "localhost"):
            # A host only by its capitals: lower-cased (as it is compared and run), it would name a path instead.
            raise InvalidInput(
                f"{text[:80]!r} is not a valid image reference: {first!r} is a registry host only by its capitals",
                "write the registry host lowercase with its domain or port (registry.example.com/...), or the"
                " repository lowercase",
            )
        return Reference(first.lower(), rest, m.group("tag"), m.group("digest"))
    ref = Reference(None, name, m.group("tag"), m.group("digest"))
    if is_id_like(ref.text):  # 'sha256' is a name, but its normal form 'sha256:latest' reads as an id
        raise ImageNotAllowed(f"{text[:80]!r} would be written {ref.text!r}, which names an image by id")
    return ref


def split_host(domain: str) -> str:
    """The host of ``host[:port]`` (brackets kept off an IPv6 literal)."""
    if domain.startswith("["):
        return domain[1 : domain.find("]")] if "]" in domain else domain
    return domain.rsplit(":", 1)[0]


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in every form C's ``inet_aton`` accepts (1 to 4 parts, each decimal, 0-octal or
    0x-hex; the last part fills the remaining bytes), or None."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            digits, base = part[2:], 16
        elif part.startswith("0") and len(part) > 1:
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not digits or not set(digits) <= _DIGITS[base]:
            return None
        values.append(int(digits, base))
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _ip_of(host: str) -> IPAddress | None:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    return inet_aton(host)


def _local_ip(ip: IPAddress, own: set[IPAddress]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if int(ip) >> 32 == 0 else None)
        if embedded is not None and _local_ip(embedded, own):
            return True
    this_network = isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK
    return ip.is_loopback or ip.is_unspecified or this_network or ip in own


def is_local_host(domain: str, own_names: Iterable[str] = (), own_addresses: Iterable[IPAddress] = ()) -> bool:
    """Does a registry ``host[:port]`` reach this machine? ``own_*``: the host's names and addresses."""
    host = split_host(domain.lower()).rstrip(".")
    if host == "localhost" or host.endswith(".localhost") or host in {n.lower() for n in own_names}:
        return True
    ip = _ip_of(host)
    return ip is not None and _local_ip(ip, set(own_addresses))


def host_names() -> set[str]:
    return {socket.gethostname()} - {""}


def host_addresses(proc: Path = Path("/proc/net")) -> set[IPAddress]:
    """The addresses of this host's interfaces (Linux: the kernel's local routes and IPv6 address list)."""
    found: set[IPAddress] = set()
    try:
        lines = (proc / "fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for previous, line in zip(lines, lines[1:], strict=False):
        if line.strip() == "/32 host LOCAL" and previous.strip().startswith("|--"):
            found.add(ipaddress.IPv4Address(previous.strip()[3:].strip()))
    try:
        for line in (proc / "if_inet6").read_text().splitlines():
            found.add(ipaddress.IPv6Address(int(line.split()[0], 16)))
    except (OSError, ValueError, IndexError):
        pass
    return found
