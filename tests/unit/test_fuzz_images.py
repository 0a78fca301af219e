"""Fuzzing image references (deploy_service, update_service, create_sandbox, and every image a Dockerfile
makes the builder fetch) and the host spellings behind the image policy.

An accepted reference is a name the engine cannot take for an image id, normalised so that normalising
again changes nothing. Whatever the operator's patterns allow, an image the policy accepts is never in
another tenant's build namespace, is in the caller's own only as one of its builds, and names a registry
on this host (however its host is written) only when it is the platform's registry or one of the
platform's images. A Dockerfile passes only when every image the builder would fetch for it passes, and
an ADD of a URL (which the engine would download itself) is refused however the file is written.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator.builds.recipes import check_add_sources
from orchestrator.errors import BuildFailed, ImageNotAllowed, InvalidInput
from orchestrator.images.dockerfile import image_uses
from orchestrator.images.policy import ImagePolicy
from orchestrator.images.refs import (
    host_addresses,
    host_names,
    inet_aton,
    is_id_like,
    is_local_host,
    parse_reference,
    split_host,
)
from orchestrator.settings import Settings

from .fuzzing import ipv4_addresses, ipv4_spellings, ipv6_spellings, mutated, raw_text, repeated

ME, OTHER = "t_0123456789ab", "t_ba9876543210"
HEX = "f77148078a37dd22c459658b30ce3a4f067630322833c5d34adbf458ae4f78bd"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")

LOCAL_V4 = st.builds(ipaddress.IPv4Address, st.integers(0x7F000000, 0x7FFFFFFF) | st.integers(0, 0xFFFFFF))
LOCAL_HOSTS = (
    LOCAL_V4.flatmap(ipv4_spellings)
    | st.sampled_from(["localhost", "LOCALHOST", "registry.localhost", "localhost."])
    | st.sampled_from(["::1", "::", "0:0:0:0:0:0:0:1"])
    .map(ipaddress.IPv6Address)
    .flatmap(ipv6_spellings)
    .map(lambda h: f"[{h}]")
    | LOCAL_V4.map(lambda v4: ipaddress.IPv6Address(f"::ffff:{v4}")).flatmap(ipv6_spellings).map(lambda h: f"[{h}]")
    | LOCAL_V4.map(lambda v4: ipaddress.IPv6Address(f"::{v4}")).flatmap(ipv6_spellings).map(lambda h: f"[{h}]")
)
REGISTRIES = (
    st.none()
    | st.sampled_from(["127.0.0.1:5000", "registry.example.com", "docker.io", "ghcr.io", "Registry", "x.io:443"])
    | st.builds(lambda h, p: h + p, LOCAL_HOSTS, st.sampled_from(["", ":5000", ":5001"]))
)
NAMESPACES = st.sampled_from(
    [
        [],
        [ME],
        [OTHER],
        ["ah-build", ME],
        ["ah-build", OTHER],
        ["ah-build"],
        ["library"],
        ["t_"],
        ["a", OTHER],
        ["ah-test"],
    ]
)


@st.composite
def references(draw: st.DrawFn) -> str:
    registry = draw(REGISTRIES)
    path = [*draw(NAMESPACES), draw(st.sampled_from(["web", "hello", "python", "x__y", "a-b", "f77", "sha256"]))]
    text = "/".join(([registry] if registry else []) + path)
    text += draw(st.sampled_from(["", ":1", ":latest", ":b_1", ":3.12", ":bookworm", ":" + "a" * 129]))
    text += draw(st.sampled_from(["", "", f"@sha256:{HEX}", f"@sha256:{HEX[:31]}", f"@SHA256:{HEX}", "@sha512:x"]))
    return text


images = (
    references()
    | mutated(references())
    | mutated(st.sampled_from(["agenthost/python:bookworm", HEX[:12], f"sha256:{HEX}", "python:3.12"]))
    | raw_text
    | repeated(["a.", "a-", "a__", "a/", "A.", "0.", "a:", "[::1]"], ("", "!", "/", ":", "@sha256:"))
)


@given(text=images)
@example(text="Registry/web")
@example(text="sha256")
def test_an_accepted_reference_is_a_normal_name_never_an_id(text: str) -> None:
    try:
        ref = parse_reference(text)
    except (ImageNotAllowed, InvalidInput):
        return
    assert not is_id_like(text)
    again = parse_reference(ref.text)  # what the policy returns is what runs: it must read the same
    assert again.text == ref.text and (again.domain, again.path, again.digest) == (ref.domain, ref.path, ref.digest)
    assert len(ref.name) <= 255 and all(_COMPONENT.fullmatch(p) for p in ref.parts)
    assert ref.domain is None or ref.domain == ref.domain.lower()
    assert ref.tag is None or _TAG.fullmatch(ref.tag)
    assert ref.digest is None or _DIGEST.fullmatch(ref.digest)
    assert not re.search(r"[\s\"'$`\\{}]", ref.text)


# -- this host in every spelling ------------------------------------------------------------------------


@given(text=st.text(st.sampled_from("0123456789abcdefxABCDEFX.")) | ipv4_addresses.flatmap(ipv4_spellings))
@example(text="0x7f.1")
def test_inet_aton_reads_every_address_c_reads(text: str) -> None:
    try:
        c_reads: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        c_reads = None
    if c_reads is not None:
        assert inet_aton(text) == c_reads


@given(host=LOCAL_HOSTS, port=st.sampled_from(["", ":5000", ":1"]), upper=st.booleans())
def test_every_spelling_of_this_host_is_local(host: str, port: str, upper: bool) -> None:
    domain = host + port
    assert is_local_host(domain.upper() if upper else domain), domain


# -- the policy -----------------------------------------------------------------------------------------

POLICIES = {
    "patterns allow everything": ImagePolicy(Settings(registry="127.0.0.1:5000", image_allow=["*"])),
    "patterns allow some": ImagePolicy(Settings(registry="127.0.0.1:5000", image_allow=["ah-test/*", "*/web:*"])),
    "no registry": ImagePolicy(Settings(registry="", image_allow=["*"])),
}
_LOCAL = (host_names(), host_addresses())


def _own_builds(asked: list[str]) -> Callable[[str], Any]:
    async def own(ref: str) -> bool:
        asked.append(ref)
        return ref.startswith((f"127.0.0.1:5000/{ME}/", f"ah-build/{ME}/"))

    return own


def _owner(parts: list[str]) -> str | None:
    if parts[0] == "ah-build":
        return parts[1] if len(parts) > 2 else ""
    return next((p for p in parts[:-1] if re.fullmatch(r"t_[a-z0-9]+", p)), None)


@pytest.mark.parametrize("policy", list(POLICIES), ids=list(POLICIES))
@given(image=images)
@example(image=f"127.0.0.1:5000/{ME}/web")
def test_an_allowed_image_is_never_another_tenants_nor_a_local_registrys(policy: str, image: str) -> None:
    checker, asked = POLICIES[policy], []
    try:
        normal = anyio.run(checker.check, image, ME, _own_builds(asked))
    except (ImageNotAllowed, InvalidInput):
        return
    ref = parse_reference(image)
    assert normal == ref.text and not is_id_like(image)
    owner = _owner(ref.parts)
    assert owner in (None, ME), f"{image!r} is in {owner!r}'s build namespace"
    if owner == ME:  # wherever it is: the own-build check pins it to the image the build made
        assert asked == [normal], "the own namespace passed without the own-build check"
    elif ref.domain is not None and ref.domain != checker.registry and is_local_host(ref.domain, *_LOCAL):
        assert normal in checker.platform_images, f"{image!r} names a registry on this host ({split_host(ref.domain)})"


# -- Dockerfiles ----------------------------------------------------------------------------------------


@given(data=st.binary())
@example(data=b"FROM a\\\n\xff\n")
def test_reading_a_dockerfile_never_fails(data: bytes) -> None:
    for use in image_uses(data.decode("utf-8", "surrogateescape")):
        assert use.ref and "\n" not in use.ref


WORD_IMAGES = st.sampled_from(
    ["agenthost/base:bookworm", "ah-test/x:1", f"127.1:5000/{OTHER}/v:b_1", HEX[:12], "ah-private/x:1", "python:3.12"]
)


URLS = st.sampled_from(
    ["http://127.0.0.1:5000/v2/_catalog", "https://example.com/x.tar", "HTTP://10.0.0.1/x", "git@github.com:o/r.git"]
)


@st.composite
def dockerfiles(draw: st.DrawFn, add_url: bool = False) -> tuple[str, list[str]]:
    """A Dockerfile with noise (case, spacing, comments, blank lines, continuations, CRLF, a BOM, the escape
    directive) around instructions that fetch images; returns its text and those images. With ``add_url``
    its last instruction is an ADD (or ONBUILD ADD) of a URL."""
    escape = draw(st.sampled_from(["\\", "\\", "`"]))
    blank = st.text(st.sampled_from(" \t\f\r"), max_size=2)  # what the builder's \s matches in a directive
    word = draw(st.sampled_from(["escape", "ESCAPE", "Escape"]))
    lines = [f"#{draw(blank)}{word}{draw(blank)}={draw(blank)}`"] if escape == "`" else []
    wanted: list[str] = []
    stage = 0

    def keyword(word: str) -> str:
        return draw(st.sampled_from([word, word.lower(), word.capitalize()]))

    def gap() -> str:
        return draw(st.sampled_from([" ", "  ", "\t", " \t "]))

    count = draw(st.integers(2 if add_url else 1, 5))
    for n in range(count):
        image = draw(WORD_IMAGES)
        kind = draw(st.sampled_from(["FROM", "COPY", "ADD", "RUN", "ONBUILD"]))
        if add_url and n == count - 1:
            prefix = draw(st.sampled_from(["", keyword("ONBUILD") + gap()]))
            line = f"{prefix}{keyword('ADD')}{gap()}{draw(URLS)}{gap()}/dst"
        elif kind == "FROM" or not wanted:
            platform = draw(st.sampled_from(["", "--platform=linux/amd64" + gap()]))
            line = f"{keyword('FROM')}{gap()}{platform}{image}{gap()}{keyword('AS')}{gap()}s{stage}"
            stage += 1
        elif kind in ("COPY", "ADD"):
            line = f"{keyword(kind)}{gap()}--chown=1:1{gap()}--from={image}{gap()}/a{gap()}/b"
        elif kind == "RUN":
            line = f"{keyword('RUN')}{gap()}--mount=type=bind,from={image},target=/x{gap()}true"
        else:
            line = f"{keyword('ONBUILD')}{gap()}{keyword('COPY')}{gap()}--from={image}{gap()}/a /b"
        if not (add_url and n == count - 1):
            wanted.append(image)
        if draw(st.booleans()):  # a backslash that ends a line but continues nothing (on this engine at least)
            ends = ["\r\r"] if escape == "\\" else ["", "\r", "\r\r"]
            lines.append(f"{keyword('LABEL')} a=\\" + draw(st.sampled_from(ends)))
        words = line.split(" ")
        cut = draw(st.integers(0, len(words) - 1))
        if cut:  # continue the line on the next, maybe past a comment and a blank line
            middle = draw(st.sampled_from(["", "# a comment\n", "\n", "  # indented\n"]))
            trail = draw(st.sampled_from(["", " ", "\t"]))
            line = " ".join(words[:cut]) + f" {escape}{trail}\n{middle}" + " ".join(words[cut:])
        lines += draw(st.sampled_from([[], ["# note"], [""], ["  "]])) + [draw(st.sampled_from(["", "  "])) + line]
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text, wanted


@given(dockerfile=dockerfiles())
@example(dockerfile=("\ufeff# escape=`\nFROM agenthost/base:bookworm\nLABEL a=\\\nFROM ah-test/x:1\n", ["ah-test/x:1"]))
@example(dockerfile=("FROM agenthost/base:bookworm\nLABEL a=\\\r\r\nFROM ah-test/x:1\n", ["ah-test/x:1"]))
@example(dockerfile=("#\x0cescape=`\nFROM agenthost/base:bookworm\nLABEL a=\\\nFROM ah-test/x:1\n", ["ah-test/x:1"]))
def test_every_image_a_dockerfile_fetches_is_found(dockerfile: tuple[str, list[str]]) -> None:
    text, wanted = dockerfile
    found = {use.ref for use in image_uses(text)}
    assert set(wanted) <= found, f"missed {set(wanted) - found} in {text!r}"


@given(dockerfile=dockerfiles())
@example(
    dockerfile=(
        f"\ufeff# escape=`\nFROM ah-test/x:1\nLABEL a=\\\nFROM 127.1:5000/{OTHER}/v:b_1\n",
        ["ah-test/x:1", f"127.1:5000/{OTHER}/v:b_1"],
    )
)
def test_a_dockerfile_passes_only_when_every_image_it_fetches_passes(dockerfile: tuple[str, list[str]]) -> None:
    text, wanted = dockerfile
    policy = POLICIES["patterns allow some"]

    async def allowed(image: str) -> bool:
        try:
            await policy.check(image, ME, _own_builds([]))
        except (ImageNotAllowed, InvalidInput):
            return False
        return True

    async def verdicts() -> tuple[bool, list[bool]]:
        try:
            await policy.check_dockerfile(text, ME, _own_builds([]))
            passed = True
        except (ImageNotAllowed, InvalidInput):
            passed = False
        return passed, [await allowed(image) for image in wanted]

    passed, each = anyio.run(verdicts)
    if passed:  # (a refusal of an allowed one may be right: where the file can be read two ways, both count)
        assert all(each), (text, dict(zip(wanted, each, strict=True)))


@given(dockerfile=dockerfiles(add_url=True))
@example(dockerfile=("\ufeff# escape=`\nFROM agenthost/base:bookworm\nLABEL a=\\\nADD http://127.1/x /d\n", []))
def test_a_dockerfile_adding_a_url_is_refused_however_it_is_written(dockerfile: tuple[str, list[str]]) -> None:
    text, _ = dockerfile
    with pytest.raises(BuildFailed, match="of a URL is refused|variable, quotes or escapes"):
        check_add_sources(text)


@given(data=st.binary())
def test_checking_add_sources_never_fails_otherwise(data: bytes) -> None:
    try:
        check_add_sources(data.decode("utf-8", "surrogateescape"))
    except BuildFailed:
        pass
