"""Fuzzing what build_from_git takes: the git URL, the addresses its host resolves to, the ref and the
Dockerfile path, and the image name a URL gives a build.

An accepted URL is ``https://`` (as git spells the scheme) with a public host and a repository path, and
nothing git or curl could read differently: no credentials, query, fragment, control characters, option
(``-...``) or transport helper (``ext::``, ``git@host:``). A local source only when the operator allows it,
and then an absolute path without '..' outside the platform's data dir. An accepted host resolves only to
public addresses (loopback with allow_local_git, private and link-local with git_allow_private_hosts, cloud
metadata never), including the IPv4 address an IPv6 one carries (mapped, compatible, NAT64).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx
from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator.builds.recipes import check_dockerfile_path
from orchestrator.builds.sources import check_addresses, check_ref, default_name, parse_git_url
from orchestrator.errors import BuildFailed, InvalidInput
from orchestrator.models import NAME_PATTERN

from .fuzzing import hostnames, ipv4_addresses, ipv6_addresses, mutated, odd_chars, raw_text, repeated

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DATA_DIR = Path("/var/lib/agenthost-fuzz")
METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@st.composite
def git_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https", "HTTPS", "Https", "http", "git", "ssh", "file", "ext", "", "https:"]))
    sep = draw(st.sampled_from(["://", "://", "://", ":/", ":", "//", ":///", "::"]))
    userinfo = draw(st.sampled_from(["", "", "", "user@", "user:pw@", "@", "%40@", "a@b@", "x:@"]))
    host = draw(hostnames | st.sampled_from(["127.0.0.1%2f", "exa%6dple.com", "[::1%25lo]", "a\\b.com", ""]))
    port = draw(
        st.sampled_from(["", "", "", ":443", ":0", ":65536", ":-1", ":+443", ":\u0664\u0664\u0663", ":", ":1:2"])
    )
    path = draw(
        st.sampled_from(
            ["/o/r.git", "/o/r.git", "", "/", "/%2e%2e/x", "/%00", "/a b", "/\xe9", "?q", "#f", "/x?y#z", "/-x"]
        )
    )
    return draw(st.sampled_from(["", " ", "-", "\n"])) + f"{scheme}{sep}{userinfo}{host}{port}{path}"


special_urls = st.sampled_from(
    [
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/x",
        "-uhttps://example.com/x",
        "git@github.com:o/r.git",
        "/srv/git/app.git",
        "/srv/git/../../etc",
        "file:///srv/git/app.git",
        "file://host/srv/x",
        "file://localhost/srv/x",
        "file:///tmp/%00x",
        "file:///var/lib/agenthost-fuzz/x",
        "file:///var/lib",
        "fd::17/foo",
        "transport::https://example.com/x",
        "https://example.com/x",
    ]
)
urls = git_urls() | mutated(special_urls) | raw_text


def _assert_clean(src_url: str, host: str | None, port: int | None, scheme: str = "https") -> None:
    assert src_url.startswith(f"{scheme}://"), f"git would not take {src_url!r} for {scheme}"
    assert not any(ord(c) < 32 or c == "\x7f" for c in src_url)
    parts = urlsplit(src_url)
    assert parts.username is None and "@" not in parts.netloc and not parts.query and not parts.fragment
    assert parts.path not in ("", "/")
    assert host is not None and host == (parts.hostname or "").strip("[]")
    try:
        parsed = httpx.URL(src_url)  # a second reading of the authority must agree with the one that was checked
    except httpx.InvalidURL:
        return  # stricter than git (e.g. 027.0.0.1, which getaddrinfo reads as 23.0.0.1: the pipeline test's)
    assert parsed.host.lower() == host.lower() and (parsed.port or (443 if scheme == "https" else 80)) == port


@given(url=urls)
@example(url="HTTPS://example.com/o/r.git")
@example(url="https://[ :1]/o/r.git")
@example(url="https:// ::1]/o/r.git")
@example(url="https://[FE80::1]/o/r.git")
@example(url="https://027.0.0.1/o/r.git")
def test_an_accepted_remote_git_url_is_plain_https(url: str) -> None:
    try:
        src = parse_git_url(url, allow_local=False, data_dir=DATA_DIR)
    except InvalidInput:
        return
    assert src.kind == "https" and not src.loopback
    _assert_clean(src.url, src.host, src.port)
    assert src.host is not None and src.host.lower().rstrip(".") != "localhost"


@given(url=urls)
@example(url="file:///tmp/%00x")
@example(url="HTTPS://0/o/r.git")
@example(url="A://[")
def test_an_accepted_local_git_source_is_an_absolute_path_outside_the_data_dir(url: str) -> None:
    try:
        src = parse_git_url(url, allow_local=True, data_dir=DATA_DIR)
    except InvalidInput:
        return
    if src.kind == "https":
        plain = not src.url.startswith("https://")
        assert src.loopback or not plain, f"plain http to a host that is not this one: {src.url!r}"
        _assert_clean(src.url, src.host, src.port, "http" if plain else "https")
        return
    assert src.url.startswith("file:///")
    path = PurePosixPath(unquote(urlsplit(src.url).path))
    assert path.is_absolute() and ".." not in path.parts and "\x00" not in str(path)
    assert path != DATA_DIR and DATA_DIR not in path.parents and path not in DATA_DIR.parents


# -- the addresses a host resolves to -------------------------------------------------------------------


def _embedded_v4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 address a connection to ``ip`` may end up at: mapped, compatible (::a.b.c.d) or NAT64."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    compatible = int(ip) >> 32 == 0 and not (ip.is_loopback or ip.is_unspecified)  # ::1 and :: are themselves
    if ip.ipv4_mapped is not None or compatible or ip in NAT64:
        return [low]
    return []


def _verdict(ip: IPAddress, allow_private: bool, allow_loopback: bool) -> bool:
    one = next(iter(_embedded_v4(ip)), ip)  # an IPv6 address carrying an IPv4 one is as good as that one
    if ip in METADATA or one in METADATA or one.is_unspecified or one.is_multicast:
        return False
    if one.is_loopback:
        return allow_loopback
    return allow_private or (one.is_global and one not in CGNAT)


addresses = st.lists(
    ipv4_addresses.map(str) | ipv6_addresses.map(str) | ipv6_addresses.map(lambda ip: f"{ip}%eth0"),
    min_size=0,
    max_size=4,
)


@given(addresses=addresses, allow_private=st.booleans(), allow_loopback=st.booleans())
@example(addresses=["64:ff9b::a9fe:a9fe"], allow_private=False, allow_loopback=False)
@example(addresses=["::7f00:1"], allow_private=False, allow_loopback=False)
@example(addresses=["::1"], allow_private=False, allow_loopback=True)
def test_accepted_addresses_are_public_or_allowed(
    addresses: list[str], allow_private: bool, allow_loopback: bool
) -> None:
    try:
        pinned = check_addresses("h", addresses, allow_private, allow_loopback)
    except InvalidInput:
        assert not addresses or not all(
            _verdict(ipaddress.ip_address(a.split("%")[0]), allow_private, allow_loopback) for a in addresses
        ), f"refused {addresses}"
        return
    assert pinned == addresses and addresses
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%")[0])
        assert _verdict(ip, allow_private, allow_loopback), f"accepted {text} ({allow_private=}, {allow_loopback=})"


def _resolve_literal(host: str) -> list[str] | None:
    """What getaddrinfo makes of an IP literal (C's inet_aton forms, IPv6), without asking DNS."""
    try:
        return (
            [str(ipaddress.IPv6Address(host.strip("[]")))]
            if ":" in host
            else [socket.inet_ntoa(socket.inet_aton(host))]
        )
    except (OSError, ValueError):
        return None


@given(url=git_urls(), allow_local=st.booleans())
def test_a_url_naming_an_address_reaches_only_what_the_operator_allows(url: str, allow_local: bool) -> None:
    """The whole check a build's host gets: the URL's shape, then the addresses it resolves to."""
    try:
        src = parse_git_url(url, allow_local=allow_local, data_dir=DATA_DIR)
    except InvalidInput:
        return
    resolved = _resolve_literal(src.host or "")
    if resolved is None:
        return  # a name: its addresses are the other test's
    try:
        check_addresses(src.host or "", resolved, allow_private=False, allow_loopback=src.loopback)
    except InvalidInput:
        return
    ip = ipaddress.ip_address(resolved[0])
    assert _verdict(ip, allow_private=False, allow_loopback=allow_local), f"{url!r} reaches {ip}"


# -- refs, Dockerfile paths and default names -----------------------------------------------------------

dockerfile_paths = (
    mutated(st.sampled_from(["Dockerfile", "docker/Dockerfile", "./Dockerfile", "a/../Dockerfile", "/Dockerfile"]))
    | st.lists(st.sampled_from(["a", ".", "..", "", "-x", "Dockerfile"]) | st.text(odd_chars, max_size=2)).map("/".join)
    | raw_text
)


@given(path=dockerfile_paths)
@example(path="Dockerfile\x00")
@example(path="\x00")
@example(path="./-")
def test_an_accepted_dockerfile_path_stays_inside_the_repository(path: str) -> None:
    try:
        rel = check_dockerfile_path(path)
    except BuildFailed:
        return
    pure = PurePosixPath(rel)
    assert rel and not pure.is_absolute() and ".." not in pure.parts and pure.parts
    assert "\x00" not in rel and not rel.startswith("-")
    assert check_dockerfile_path(rel) == rel


refs = (
    mutated(st.sampled_from(["main", "v1.2", "feature/x", "HEAD", "f77148078a37", "refs/tags/v1"]))
    | mutated(st.sampled_from(["--upload-pack=x", "a..b", "@{-1}", "main^{commit}", "-"]))
    | raw_text
    | repeated(["a", "a/", "."], ("", "\n", ".."))
)


@given(ref=refs)
@example(ref="main\n")
def test_an_accepted_ref_is_a_plain_name_that_is_no_option(ref: str) -> None:
    try:
        check_ref(ref)
    except InvalidInput:
        return
    assert re.fullmatch(r"[A-Za-z0-9._/+-]{1,200}", ref) and not ref.startswith("-") and ".." not in ref


@given(url=urls | repeated(["a/", "-", "_.", "é"], ("", ".git", "/")))
@example(url="A://[")
def test_the_default_build_name_is_a_resource_name(url: str) -> None:
    name = default_name(url)
    assert re.fullmatch(NAME_PATTERN.removeprefix("^").removesuffix("$"), name), (url, name)
