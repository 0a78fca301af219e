from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from mcp_server import tools as _tools  # noqa: F401
from mcp_server.registry import REGISTRY, Call, admit, tool
from orchestrator.errors import ConfirmationRequired, ReadOnly
from orchestrator.models import Deleted, Principal
from orchestrator.settings import Settings


def test_every_tool_is_documented_typed_and_annotated() -> None:
    assert len(REGISTRY) >= 18
    for td in REGISTRY.values():
        assert td.description, td.name
        assert td.output_model.model_json_schema()["type"] == "object", td.name
        assert not (td.read_only and td.destructive), td.name
    # Destructive tools that delete or overwrite data ask first; the other destructive ones (exec, unset_env,
    # add_ssh_key's remove, link_database's unlink) say so in their annotations and do not.
    asks = {n for n, td in REGISTRY.items() if any(p.name == "confirm" for p in td.params)}
    assert asks == {
        "delete_service",
        "delete_database",
        "delete_backup",
        "delete_sandbox",
        "delete_volume",
        "restore_backup",
        "revoke_api_key",
    }
    assert all(REGISTRY[n].destructive and REGISTRY[n].ask is not None for n in asks)


def test_arguments_are_validated_strictly() -> None:
    deploy = REGISTRY["deploy_service"].args_model
    deploy.model_validate({"name": "web", "image": "img:1"})
    deploy.model_validate({"name": "web", "build_id": "b_1"})  # image xor build_id: checked by DeployRequest
    for bad in (
        {"name": "Web", "image": "i"},
        {"name": "web", "image": "i", "port": 0},
        {"name": "web", "image": "i", "surprise": 1},
    ):
        with pytest.raises(ValidationError):
            deploy.model_validate(bad)


def _call(scope: str, server_read_only: bool = False) -> Call:
    platform = SimpleNamespace(settings=Settings(read_only=server_read_only))
    principal = Principal(tenant_id="t_a", tenant_name="a", role="member", scope=scope, key_id="k")  # type: ignore[arg-type]
    return Call(platform=platform, principal=principal)  # type: ignore[arg-type]


def test_answers_holding_secrets_are_marked() -> None:
    secret = {name for name, td in REGISTRY.items() if td.answer_is_secret({"reveal": True})}
    assert secret == {"create_api_key", "create_tenant", "list_env", "database_connection_string"}
    assert not REGISTRY["list_env"].answer_is_secret({"reveal": False})
    for td in REGISTRY.values():
        if td.reveals:  # revealing is reading: the gate, not the tool's kind, keeps it from read keys
            assert td.read_only, td.name


@pytest.mark.parametrize("tool", ["list_env", "database_connection_string"])
def test_reveal_needs_a_full_key_on_a_writable_server(tool: str) -> None:
    td = REGISTRY[tool]
    admit(td, _call("full"), {"reveal": True})
    admit(td, _call("read"), {"reveal": False})
    admit(td, _call("read", server_read_only=True), {"reveal": False})
    for call, hint in ((_call("read"), "full scope"), (_call("full", server_read_only=True), "masked")):
        with pytest.raises(ReadOnly) as err:
            admit(td, call, {"reveal": True})
        assert "reveal=true" in err.value.message and hint in err.value.hint


def test_the_users_answer_decides_and_confirm_counts_only_when_they_could_not_be_asked() -> None:
    cannot_ask = _call("full")
    cannot_ask.confirm(True, "Delete service 'web'?")
    with pytest.raises(ConfirmationRequired) as err:
        cannot_ask.confirm(False, "Delete service 'web'?")
    assert err.value.message == "Delete service 'web'?" and "confirm=true" in err.value.hint

    replace(cannot_ask, answer=True).confirm(False, "Delete service 'web'?")
    with pytest.raises(ConfirmationRequired) as err:
        replace(cannot_ask, answer=False).confirm(True, "Delete service 'web'?")
    assert err.value.message == "the user declined: Delete service 'web'?"
    assert "confirm=true" not in err.value.hint


def test_a_destructive_tool_must_say_what_it_asks() -> None:
    async def nothing(call: Call, confirm: bool = False) -> Deleted:
        raise AssertionError("never called")

    with pytest.raises(TypeError):
        tool(destructive=True)(nothing)
    assert "nothing" not in REGISTRY
