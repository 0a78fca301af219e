"""Fuzzing the pydantic edges a tenant's arguments meet first: resource names, the user a service runs as,
volume mount paths and health-check paths. Each accepts only what the code behind it relies on, and
refuses everything else with a ValidationError (never another exception)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from orchestrator.builds import BuildRequest
from orchestrator.databases import CreateDatabaseRequest
from orchestrator.models import NAME_PATTERN, HealthCheck, VolumeMount
from orchestrator.sandboxes import SandboxRequest
from orchestrator.services.requests import DeployRequest

from .fuzzing import mutated, odd_chars, raw_text, repeated

# -- resource names -------------------------------------------------------------------------------------

_TENANT_NAME = TypeAdapter(Annotated[str, Field(pattern=NAME_PATTERN)])  # create_tenant's argument

NAME_EDGES: list[tuple[str, Callable[[str], Any]]] = [
    ("deploy_service", lambda v: DeployRequest(name=v, image="x").name),
    ("create_database", lambda v: CreateDatabaseRequest(name=v, engine="postgres").name),
    ("create_sandbox", lambda v: SandboxRequest(name=v).name),
    ("build_from_git", lambda v: BuildRequest(git_url="https://example.com/x", name=v).name),
    ("volume", lambda v: VolumeMount(name=v, path="/data").name),
    ("create_tenant", _TENANT_NAME.validate_python),
]

names = (
    mutated(st.from_regex(NAME_PATTERN, fullmatch=True))
    | raw_text
    | repeated(["a-", "a", "-", "a0"], ("", "-", "\n", "A"))
)


def is_dns_label(name: str) -> bool:
    return (
        1 <= len(name) <= 63
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in name)
        and name[0].isalpha()
        and not name.endswith("-")
    )


@pytest.mark.parametrize(("where", "build"), NAME_EDGES, ids=[w for w, _ in NAME_EDGES])
@given(name=names)
def test_an_accepted_resource_name_is_a_dns_label_within_the_name_pattern(
    where: str, build: Callable[[str], Any], name: str
) -> None:
    try:
        accepted = build(name)
    except ValidationError:
        return
    assert accepted == name
    assert re.fullmatch(NAME_PATTERN.removeprefix("^").removesuffix("$"), name) and len(name) <= 40
    assert is_dns_label(name), f"{where} accepted {name!r}"


@given(user=mutated(st.sampled_from(["root", "1000", "1000:1000", "app:app", "www-data"])) | raw_text)
def test_an_accepted_user_is_a_name_or_id_with_an_optional_group(user: str) -> None:
    try:
        accepted = DeployRequest(name="web", image="x", user=user).user
    except ValidationError:
        return
    assert accepted is not None and re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", accepted)


# -- volume mount paths ---------------------------------------------------------------------------------

_COMPONENTS = st.sampled_from(["data", "var", "lib", "a.b", "-x", ".", "..", "", "...", "_"]) | st.text(
    odd_chars, max_size=2
)
mount_paths = (
    st.lists(_COMPONENTS, max_size=6).map(lambda parts: "/" + "/".join(parts))
    | st.lists(_COMPONENTS, max_size=4).map("/".join)
    | mutated(st.sampled_from(["/data", "/var/lib/app", "/", "/.", "/..", "//data", "/data/"]))
    | raw_text
)


def _mount(path: str) -> str:
    return VolumeMount(name="data", path=path).path


@given(path=mount_paths)
@example(path="/")
@example(path="/.")
@example(path="/data/..")
def test_an_accepted_mount_path_is_absolute_normal_and_not_the_root(path: str) -> None:
    try:
        accepted = _mount(path)
    except ValidationError:
        return
    assert accepted.startswith("/") and accepted != "/", accepted
    assert re.fullmatch(r"[A-Za-z0-9._/-]*", accepted), accepted
    parts = accepted[1:].split("/")
    assert "" not in parts and "." not in parts and ".." not in parts, accepted  # no //, trailing /, . or ..
    assert _mount(accepted) == accepted


@given(
    parts=st.lists(st.sampled_from(["data", "lib", "a.b", "x-y"]), min_size=1, max_size=4),
    spelling=st.lists(st.sampled_from(["//", "/./", "/z/../"]), min_size=1, max_size=3),
    trailing=st.sampled_from(["", "/", "/.", "/x/.."]),
)
@example(parts=["data", "data"], spelling=["//"], trailing="")
@example(parts=["data"], spelling=["//"], trailing="/")
def test_spellings_of_one_mount_path_are_one_path(parts: list[str], spelling: list[str], trailing: str) -> None:
    """The deploy refuses two volumes on one path by comparing paths: that holds only if they are normal."""
    plain = "/" + "/".join(parts)
    odd = "/" + parts[0]
    for i, part in enumerate(parts[1:]):
        odd += spelling[i % len(spelling)] + part
    assert _mount(odd + trailing) == _mount(plain) == plain


# -- health-check paths ---------------------------------------------------------------------------------

health_paths = (
    mutated(st.sampled_from(["/", "/healthz", "/a?b=c", "/x#y", "//other.host/x", "/@evil", "/%00"]))
    | raw_text.map(lambda t: "/" + t)
    | raw_text
)


@given(path=health_paths)
@example(path="/\x1f")
@example(path="/\x00")
def test_an_accepted_health_path_is_a_url_path_on_the_service_itself(path: str) -> None:
    try:
        accepted = HealthCheck(type="http", path=path).path
    except ValidationError:
        return
    url = httpx.URL(f"http://127.0.0.1:8080{accepted}")  # what readiness.endpoint_answers asks for
    assert (url.host, url.port) == ("127.0.0.1", 8080)
