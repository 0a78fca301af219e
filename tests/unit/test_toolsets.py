"""Toolsets: every tool is in one (or in every choice), and the names agree with the setting's."""

from __future__ import annotations

import pytest

from mcp_server.app import build_mcp  # noqa: F401  (fills the registry)
from mcp_server.registry import REGISTRY, refusal
from mcp_server.toolsets import ALWAYS, MEMBERS, parse_header, toolsets_of
from orchestrator.errors import Forbidden, InvalidInput, ReadOnly
from orchestrator.models import Principal
from orchestrator.settings import DEFAULT_TOOLSETS, TOOLSETS, Settings

MEMBER = Principal(tenant_id="t", tenant_name="t", role="member", key_id="k")
ADMIN = Principal(tenant_id="t", tenant_name="t", role="admin", key_id="k")
READER = Principal(tenant_id="t", tenant_name="t", role="member", scope="read", key_id="k")


def test_every_tool_is_in_a_toolset_or_always_listed() -> None:
    assert tuple(MEMBERS) == TOOLSETS
    grouped = set().union(*MEMBERS.values())
    assert grouped <= set(REGISTRY)
    assert {n for n in REGISTRY if not toolsets_of(n)} == ALWAYS
    assert MEMBERS["admin"] == {n for n, td in REGISTRY.items() if td.admin_only}


def test_the_setting_and_the_header_parse_the_same_names() -> None:
    assert Settings().toolsets == list(DEFAULT_TOOLSETS)
    assert Settings(toolsets="data, builds").toolsets == ["builds", "data"]
    assert Settings(toolsets="all").toolsets == list(TOOLSETS)
    with pytest.raises(ValueError, match="root"):
        Settings(toolsets="services,root")
    assert parse_header(None, ["builds"]) == {"builds"}
    assert parse_header("services,all", []) == set(TOOLSETS)
    with pytest.raises(InvalidInput) as err:
        parse_header("services,root", [])
    assert "root" in err.value.message


def test_refusal_is_role_scope_and_toolset() -> None:
    everything = frozenset(TOOLSETS)
    assert isinstance(refusal(REGISTRY["create_tenant"], MEMBER, False, everything), Forbidden)
    assert refusal(REGISTRY["create_tenant"], ADMIN, False, everything) is None
    assert isinstance(refusal(REGISTRY["deploy_service"], READER, False, everything), ReadOnly)
    assert isinstance(refusal(REGISTRY["deploy_service"], ADMIN, True, everything), ReadOnly)
    hidden = refusal(REGISTRY["deploy_service"], MEMBER, False, frozenset({"builds"}))
    assert isinstance(hidden, Forbidden) and "services" in hidden.message
    assert refusal(REGISTRY["exec"], MEMBER, False, frozenset({"sandboxes"})) is None
    assert refusal(REGISTRY["whoami"], READER, False, frozenset()) is None
