"""What an MCP client sees: schemas, annotations, resources, prompts, confirmation by elicitation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp_types import ElicitRequestParams, ElicitResult

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MUTATING = {"deploy_service", "start_service", "stop_service", "restart_service", "set_env", "unset_env"}
DESTRUCTIVE = {"delete_service", "revoke_api_key", "delete_database", "restore_backup", "delete_backup"}


async def test_tools_are_typed_annotated_and_small(agenthost: AgentHost) -> None:
    async with connect(agenthost, agenthost.admin_key, "stdio") as client:
        tools = (await client.list_tools()).tools
    by_name = {t.name: t for t in tools}
    for t in tools:
        assert t.description and len(t.description) < 600, t.name
        assert t.input_schema["type"] == "object", t.name
        assert t.output_schema and t.output_schema.get("type") == "object", t.name
        assert t.annotations is not None, t.name
        # Read-only tools say so; the others say whether they destroy (the spec's default would be "yes").
        assert t.annotations.read_only_hint is True or t.annotations.destructive_hint is not None, t.name
        assert t.output_schema["properties"], t.name
    for name in ("whoami", "platform_status", "list_services", "get_service", "service_logs", "list_env"):
        assert by_name[name].annotations.read_only_hint is True, name
    for name in MUTATING:
        assert not by_name[name].annotations.read_only_hint, name
        assert by_name[name].annotations.destructive_hint is False, name
    for name in DESTRUCTIVE:
        assert by_name[name].annotations.destructive_hint is True, name
    deploy = by_name["deploy_service"].input_schema
    assert deploy["required"] == ["name"]  # and one of image or build_id
    assert deploy["properties"]["port"]["maximum"] == 65535
    # The whole listing stays small enough for an agent's context (target: under 8,000 tokens).
    wire = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    size = len(json.dumps(wire, separators=(",", ":")))
    assert size / 4 < 8000, f"tools/list is about {size / 4:.0f} tokens"


async def test_resources_and_prompts(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("surface")
    async with connect(agenthost, key, "http") as client:
        await call(client, "deploy_service", {"name": "res", "image": hello_image, "port": 8000})
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"agenthost://platform/status", "agenthost://services"} <= uris
        listing = await client.read_resource("agenthost://services")
        assert [s["name"] for s in json.loads(listing.contents[0].text)["services"]] == ["res"]
        one = await client.read_resource("agenthost://services/res")
        assert json.loads(one.contents[0].text)["status"] == "running"
        logs = await client.read_resource("agenthost://services/res/logs")
        assert "hello app starting" in json.loads(logs.contents[0].text)["output"]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert {"deploy_app", "debug_service"} <= prompts
        prompt = await client.get_prompt("debug_service", {"service": "res"})
        assert "service_logs" in prompt.messages[0].content.text
        await call(client, "delete_service", {"service": "res", "confirm": True})


async def test_destructive_tool_asks_by_elicitation(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("elicit")
    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(
            action="accept", content={"confirm": not params.message.startswith("Delete service 'keep'")}
        )

    async with connect(agenthost, key, "stdio", elicitation_callback=answer) as client:
        for name in ("gone", "keep"):
            await call(client, "deploy_service", {"name": name, "image": hello_image, "wait": False})
        deleted = await call(client, "delete_service", {"service": "gone"})
        assert deleted["name"] == "gone"
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_service", {"service": "keep"})
        assert err.value.code == "confirmation_required"
        assert len(asked) == 2 and "cannot be undone" in asked[0]
        assert [s["name"] for s in (await call(client, "list_services"))["services"]] == ["keep"]
        await call(client, "delete_service", {"service": "keep", "confirm": True})
