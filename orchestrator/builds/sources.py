"""Which git sources a build may fetch from: pure checks, no I/O (the caller resolves host names).

- ``https://host/path`` on any public host. No credentials in the URL (they would be stored and
  logged), no query string or fragment.
- Local sources (a path, ``file://``, ``http(s)://`` to a loopback address) only when the operator
  sets ``allow_local_git``: they reach into the control plane's own host.
- Every other scheme (ssh, git, ext::, scp-like ``git@host:repo``) is refused.
- A host that resolves to a private, loopback, link-local or otherwise non-public address is
  refused unless the operator sets ``git_allow_private_hosts``; cloud metadata addresses are
  refused always. The resolved addresses are then pinned for git (``http.curloptResolve``), so a
  second lookup cannot rebind the name to an address that was never checked.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit

from ..errors import InvalidInput

__all__ = ["GitSource", "check_addresses", "check_ref", "default_name", "parse_git_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REF = re.compile(r"[A-Za-z0-9._/+-]{1,200}")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")
_HTTPS_HINT = "use an https URL such as https://github.com/owner/repo.git"


@dataclass(frozen=True)
class GitSource:
    """A validated source. ``url`` is what git is given; ``host``/``port`` are set for network URLs."""

    kind: Literal["https", "local"]
    url: str
    host: str | None = None
    port: int | None = None
    loopback: bool = False


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_loopback_name(host: str) -> bool:
    ip = _literal_ip(host)
    return host.lower() in ("localhost", "localhost.") or (ip is not None and ip.is_loopback)


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # a bracketed host that is no IPv6 address ('https://[ :1]/x', 'https://[x')
        raise InvalidInput(f"git_url does not parse as a URL ({exc})", _HTTPS_HINT) from exc


def parse_git_url(url: str, allow_local: bool, data_dir: Path | None = None) -> GitSource:
    """Check the shape of a git URL. Raises: InvalidInput saying what is refused and why."""
    url = url.strip()
    if not url or len(url) > 1024 or any(ord(c) < 32 or c == "\x7f" for c in url):
        raise InvalidInput("git_url is empty, too long or holds control characters", _HTTPS_HINT)
    if url.startswith("-"):
        raise InvalidInput("git_url may not start with '-'", _HTTPS_HINT)
    if url.startswith(("/", "file://")):
        return _local(url, allow_local, data_dir)
    if re.match(r"^[A-Za-z0-9._-]+@[^:/]+:", url) or "::" in url.split("/", 1)[0]:
        raise InvalidInput(f"git_url {url!r} uses ssh or a git transport helper, which builds do not use", _HTTPS_HINT)
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidInput(f"git_url scheme {parts.scheme or '(none)'!r} is not allowed", _HTTPS_HINT)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidInput(
            "git_url holds credentials; they would be stored with the build and shown in its log",
            "use a public repository, or ask the operator to mirror a private one",
        )
    if parts.query or parts.fragment:
        raise InvalidInput("git_url may not have a query string or a fragment", "pass the branch or tag as ref")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"git_url has an invalid port ({exc})", _HTTPS_HINT) from exc
    if not host or (_literal_ip(host) is None and not _HOST.match(host)):
        raise InvalidInput(f"git_url has an invalid host {host!r}", _HTTPS_HINT)
    if not parts.path or parts.path == "/":
        raise InvalidInput("git_url names no repository path", _HTTPS_HINT)
    loopback = _is_loopback_name(host)
    if loopback and not allow_local:
        raise InvalidInput(
            f"git_url points at this host ({host})", "local sources need the operator setting allow_local_git"
        )
    if scheme == "http" and not loopback:
        raise InvalidInput("plain http git URLs are refused (only https)", _HTTPS_HINT)
    default_port = 443 if scheme == "https" else 80
    url = scheme + url[len(scheme) :]  # git finds no transport for 'HTTPS://'
    return GitSource(kind="https", url=url, host=host.strip("[]"), port=port or default_port, loopback=loopback)


def _local(url: str, allow_local: bool, data_dir: Path | None) -> GitSource:
    if not allow_local:
        raise InvalidInput(
            "local git sources (paths and file://) are disabled on this platform",
            "use an https URL; an operator may enable local sources with allow_local_git",
        )
    raw = unquote(_split(url).path) if url.startswith("file://") else url
    if any(ord(c) < 32 or c == "\x7f" for c in raw):
        raise InvalidInput("a local git source may not hold control characters (%00 and the like)")
    if url.startswith("file://") and _split(url).netloc not in ("", "localhost"):
        raise InvalidInput("file:// URLs must not name a host", "use file:///absolute/path")
    path = PurePosixPath(raw)
    if not path.is_absolute() or ".." in path.parts:
        raise InvalidInput("a local git source must be an absolute path without '..'", "e.g. /srv/git/app.git")
    resolved = Path(path).resolve()
    if data_dir is not None:
        data = data_dir.resolve()
        if resolved == data or data in resolved.parents or resolved in data.parents:
            raise InvalidInput("a local git source may not be or contain the platform's data dir")
    return GitSource(kind="local", url=resolved.as_uri())


def check_addresses(host: str, addresses: list[str], allow_private: bool, allow_loopback: bool = False) -> list[str]:
    """Refuse hosts resolving to addresses a build must not reach. Returns the addresses to pin.

    Loopback addresses (the control plane's own host) pass only with ``allow_loopback`` (the operator's
    allow_local_git), private and link-local ones only with ``allow_private``, metadata ones never.

    Raises: InvalidInput.
    """
    if not addresses:
        raise InvalidInput(f"git host {host!r} did not resolve to any address")
    for text in addresses:
        ip: IPAddress = ipaddress.ip_address(text.split("%", 1)[0])
        ip = _carried_ipv4(ip) or ip
        if ip in _METADATA:
            raise InvalidInput(f"git host {host!r} resolves to a cloud metadata address ({ip})", _HTTPS_HINT)
        if ip.is_unspecified or ip.is_multicast:
            raise InvalidInput(f"git host {host!r} resolves to an unusable address ({ip})", _HTTPS_HINT)
        if ip.is_loopback:
            if not allow_loopback:
                raise InvalidInput(
                    f"git host {host!r} resolves to this host ({ip})",
                    "local sources need the operator setting allow_local_git",
                )
            continue
        if not (ip.is_global and ip not in _CGNAT) and not allow_private:
            raise InvalidInput(
                f"git host {host!r} resolves to a non-public address ({ip})",
                "builds fetch from public hosts only; an operator may allow private ones (git_allow_private_hosts)",
            )
    return addresses


def _carried_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to an IPv6 one ends up at: mapped (::ffff:a.b.c.d), compatible
    (::a.b.c.d, but not ::1 and ::) or through a NAT64 gateway's well-known prefix (64:ff9b::a.b.c.d)."""
    if not isinstance(ip, ipaddress.IPv6Address) or ip.is_loopback or ip.is_unspecified:
        return None
    if ip.ipv4_mapped is not None or int(ip) >> 32 == 0 or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_ref(ref: str) -> None:
    """Raises: InvalidInput unless ``ref`` can only be a branch, tag or commit name (no option, no '..')."""
    if not _REF.fullmatch(ref) or ref.startswith("-") or ".." in ref:
        raise InvalidInput(f"ref {ref!r} is not a valid branch, tag or commit name", "e.g. 'main', 'v1.2', or a sha")


def default_name(url: str) -> str:
    """An image name from the repository's last path component: 'https://h/o/My_App.git' -> 'my-app'."""
    try:
        path = urlsplit(url).path if "://" in url else url
    except ValueError:
        path = url
    last = path.rstrip("/").rsplit("/", 1)[-1]
    last = last.removesuffix(".git").lower()
    name = re.sub(r"[^a-z0-9-]+", "-", last).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"app-{name}" if name else "app"
    return name[:40].rstrip("-")
