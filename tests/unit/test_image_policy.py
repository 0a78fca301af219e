"""Which images a tenant may use: reference parsing, id-like names, every spelling of this host, the policy."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from orchestrator.builds.recipes import plan_build
from orchestrator.errors import ImageNotAllowed, InvalidInput
from orchestrator.images import ImagePolicy
from orchestrator.images.refs import host_addresses, inet_aton, is_local_host, parse_reference
from orchestrator.settings import Settings

HEX = "f77148078a37dd22c459658b30ce3a4f067630322833c5d34adbf458ae4f78bd"
ME, OTHER = "t_0123456789ab", "t_ba9876543210"
OWN_IMAGE = f"127.0.0.1:5000/{ME}/web:b_1"


# -- references ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["f", "f77", HEX[:12], HEX, "sha256:f7", f"sha256:{HEX}", f"SHA256:{HEX}", "sha512:ab"]
)
def test_id_like_references_are_refused(text: str) -> None:
    with pytest.raises(ImageNotAllowed, match="by id"):
        parse_reference(text)


@pytest.mark.parametrize(
    ("text", "domain", "path", "normal"),
    [
        ("python", None, "python", "python:latest"),
        ("f77:1", None, "f77", "f77:1"),  # a tag makes it a name: the engine looks no id up for it
        ("library/f77", None, "library/f77", "library/f77:latest"),
        ("ah-test/hello:1", None, "ah-test/hello", "ah-test/hello:1"),
        ("localhost/x", "localhost", "x", "localhost/x:latest"),
        ("LOCALHOST:5000/x:1", "localhost:5000", "x", "localhost:5000/x:1"),
        ("127.0.0.1:5000/t_a/web:b_1", "127.0.0.1:5000", "t_a/web", "127.0.0.1:5000/t_a/web:b_1"),
        ("[::1]:5000/x", "[::1]:5000", "x", "[::1]:5000/x:latest"),
        (f"x@sha256:{HEX}", None, "x", f"x@sha256:{HEX}"),
        (f"x:1@sha256:{HEX}", None, "x", f"x:1@sha256:{HEX}"),
    ],
)
def test_references_parse_as_the_engine_reads_them(text: str, domain: str | None, path: str, normal: str) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.text) == (domain, path, normal)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Foo",
        "a b",
        "x:${TAG}",
        'x"',
        "x\\y",
        "x:1 --privileged",
        "-x",
        "x/",
        f"x@sha256:{HEX[:20]}",
        "Registry/x",  # the engine takes it for a host, which lower-cased would be a path
    ],
)
def test_malformed_references_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid image reference"):
        parse_reference(text)


# -- this host in every spelling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["127.0.0.1", "127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "017700000001", "10.1.2.3"]
)
def test_inet_aton_reads_what_libc_reads(text: str) -> None:
    assert inet_aton(text) == ipaddress.IPv4Address(socket.inet_aton(text))


@pytest.mark.parametrize(
    "text", ["", "08.0.0.1", "0x", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1..2", "127.0.0.1.", "a"]
)
def test_inet_aton_refuses_what_libc_refuses(text: str) -> None:
    assert inet_aton(text) is None
    with pytest.raises(OSError):
        socket.inet_aton(text)


OWN_ADDRESS = ipaddress.IPv4Address("10.1.2.3")


@pytest.mark.parametrize(
    "domain",
    [
        "localhost",
        "LocalHost:5000",
        "registry.localhost:5000",
        "127.0.0.1:5000",
        "127.0.0.2:5000",
        "127.1:5000",
        "127.255.255.254",
        "2130706433:5000",
        "0177.0.0.1:5000",
        "0x7f.0.0.1:5000",
        "0x7f.1",
        "0x7f000001:5000",
        "0.0.0.0:5000",
        "0:5000",
        "[::1]:5000",
        "[0:0:0:0:0:0:0:1]:5000",
        "[::]:5000",
        "[::ffff:127.0.0.1]:5000",
        "[::ffff:7f00:1]:5000",
        "[::ffff:127.1.2.3]",
        "[::127.0.0.1]:5000",
        "10.1.2.3:5000",  # an address of this host
        "167838211:5000",  # the same, in decimal
        "012.1.2.3:5000",  # ... and octal
        "[::ffff:10.1.2.3]:5000",
        "myhost:5000",  # this host's name
        "MyHost",
    ],
)
def test_every_spelling_of_this_host_is_local(domain: str) -> None:
    assert is_local_host(domain, own_names={"myhost"}, own_addresses={OWN_ADDRESS})


@pytest.mark.parametrize(
    "domain", ["128.0.0.1:5000", "10.1.2.4:5000", "registry.example.com", "08.0.0.1:5000", "[2001:db8::1]:5000"]
)
def test_other_hosts_are_not_local(domain: str) -> None:
    assert not is_local_host(domain, own_names={"myhost"}, own_addresses={OWN_ADDRESS})


def test_host_addresses_are_read_from_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "fib_trie").write_text(
        "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.1.2.3\n        /32 host LOCAL\n"
        "     |-- 10.1.2.255\n        /32 link BROADCAST\n"
    )
    (tmp_path / "if_inet6").write_text("fd000000000000000000000000000002 04 40 00 82     eth0\n")
    assert host_addresses(tmp_path) == {OWN_ADDRESS, ipaddress.IPv6Address("fd00::2")}


@pytest.mark.skipif(not Path("/proc/net/fib_trie").exists(), reason="no /proc/net/fib_trie: not Linux")
def test_this_hosts_addresses_include_loopback() -> None:
    assert ipaddress.IPv4Address("127.0.0.1") in host_addresses()


# -- the policy -----------------------------------------------------------------------------------------


SETTINGS = Settings(registry="127.0.0.1:5000", image_allow=["ah-test/*", "python:3.*"])


@pytest.mark.parametrize("env", ['["ah-test/*", "python:3.*"]', "ah-test/*, python:3.*", " ah-test/*,,python:3.*, "])
def test_image_allow_is_a_json_list_or_comma_separated(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHOST_IMAGE_ALLOW", env)
    assert Settings().image_allow == ["ah-test/*", "python:3.*"]


async def _own(image: str) -> bool:
    return image == OWN_IMAGE


async def _check(image: str, settings: Settings = SETTINGS) -> str:
    return await ImagePolicy(settings).check(image, ME, _own)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("image", "normal"),
    [
        ("agenthost/python:bookworm", "agenthost/python:bookworm"),
        ("agenthost/postgres:bookworm", "agenthost/postgres:bookworm"),
        ("ah-test/hello:1", "ah-test/hello:1"),
        ("ah-test/hello", "ah-test/hello:latest"),
        (f"ah-test/hello@sha256:{HEX}", f"ah-test/hello@sha256:{HEX}"),
        ("python:3.12", "python:3.12"),
        (OWN_IMAGE, OWN_IMAGE),
    ],
)
async def test_allowed_images(image: str, normal: str) -> None:
    assert await _check(image) == normal


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("image", "why"),
    [
        (HEX[:12], "by id"),
        (f"sha256:{HEX}", "by id"),
        ("ah-private/secret:1", "not one this platform allows"),
        ("python:2.7", "not one this platform allows"),
        (f"agenthost/python@sha256:{HEX}", "not one this platform allows"),
        ("agenthost/python", "not one this platform allows"),  # :latest is not the configured tag
        (f"127.0.0.1:5000/{ME}/web:b_2", "not one of your succeeded builds"),
        (f"ah-build/{ME}/web:b_2", "not one of your succeeded builds"),
        (f"127.0.0.1:5000/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"127.1:5000/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"[::1]:5000/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"2130706433:5000/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"registry.example.com/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"ah-build/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"registry.example.com/ah-build/{OTHER}/web:b_1", "another tenant's build namespace"),
        (f"127.1:5000/{ME}/web:b_1", "not one of your succeeded builds"),  # own, but an alias: not pinned
        ("localhost:5000/ah-test/hello:1", "registry on this host"),
        ("[::ffff:127.0.0.1]:5000/ah-test/x:1", "registry on this host"),
        ("0177.0.0.1:5000/shared/x:1", "registry on this host"),
    ],
)
async def test_refused_images(image: str, why: str) -> None:
    with pytest.raises(ImageNotAllowed, match=why) as err:
        await _check(image)
    assert "ah-test/*, python:3.*" in err.value.hint and "your own builds" in err.value.hint


@pytest.mark.anyio
async def test_patterns_never_open_what_is_always_refused() -> None:
    everything = Settings(registry="127.0.0.1:5000", image_allow=["*"])
    assert await _check("anything/at:all", everything) == "anything/at:all"
    assert await _check("127.0.0.1:5000/shared/x:1", everything) == "127.0.0.1:5000/shared/x:1"
    for image in (HEX[:12], f"127.0.0.1:5000/{OTHER}/web:b_1", f"ah-build/{OTHER}/x:1", "localhost:5000/x:1"):
        with pytest.raises(ImageNotAllowed):
            await _check(image, everything)


@pytest.mark.anyio
async def test_without_builds_the_own_namespace_is_refused_and_the_hint_says_how_to_allow_more() -> None:
    policy = ImagePolicy(Settings())
    with pytest.raises(ImageNotAllowed, match="not one of your succeeded builds") as err:
        await policy.check(OWN_IMAGE, ME, None)
    assert "agenthost/python:bookworm" in err.value.hint and "AGENTHOST_IMAGE_ALLOW" in err.value.hint


@pytest.mark.anyio
async def test_a_moved_tag_is_refused_by_the_own_build_check() -> None:
    async def moved(image: str) -> bool:
        raise ImageNotAllowed(f"{image} is not the image build b_1 made")

    with pytest.raises(ImageNotAllowed, match="is not the image build"):
        await ImagePolicy(SETTINGS).check(OWN_IMAGE, ME, moved)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dockerfile", "why"),
    [
        ("ARG X=agenthost/base:bookworm\nFROM ${X}\n", "variable"),
        ('FROM "agenthost/base:bookworm"\n', "variable, quotes"),
        ("FROM agenthost/base:bookworm\nCOPY --from=a\\$b / /\n", "variable, quotes"),
        (f"FROM 127.1:5000/{OTHER}/v:b_1\n", "FROM: image .* another tenant's"),
        (f"FROM agenthost/base:bookworm\nCOPY --from={HEX[:12]} / /\n", "COPY --from: .* by id"),
        ("FROM agenthost/base:bookworm AS build\nCOPY --from=1 / /\n", "COPY --from: .* by id"),
        ("FROM agenthost/base:bookworm\nONBUILD COPY --from=ah-private/x:1 / /\n", "ONBUILD COPY --from"),
    ],
)
async def test_dockerfiles_naming_images_they_may_not_use_are_refused(dockerfile: str, why: str) -> None:
    with pytest.raises(ImageNotAllowed, match=why):
        await ImagePolicy(SETTINGS).check_dockerfile(dockerfile, ME, _own)


@pytest.mark.anyio
async def test_allowed_dockerfiles_and_generated_recipes_pass(tmp_path: Path) -> None:
    policy = ImagePolicy(SETTINGS)
    await policy.check_dockerfile(
        f"FROM {OWN_IMAGE} AS build\nFROM ah-test/x:1\nCOPY --from=build / /\nCOPY --from=0 / /\nFROM scratch\n",
        ME,
        _own,
    )
    for name, files in (
        ("py", {"app.py": "print(1)", "requirements.txt": "flask\n"}),
        ("node", {"package.json": '{"scripts": {"start": "node s.js"}}'}),
        ("static", {"index.html": "hi"}),
    ):
        (tmp_path / name).mkdir()
        for file, content in files.items():
            (tmp_path / name / file).write_text(content)
        await policy.check_dockerfile(plan_build(tmp_path / name, None, SETTINGS).text, ME, None)
