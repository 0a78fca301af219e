"""What an MCP client sees: schemas, annotations, toolsets and the size of tools/list, progress, resources,
prompts, confirmation by elicitation."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_types import ElicitRequestParams, ElicitResult

from orchestrator.settings import DEFAULT_TOOLSETS, TOOLSETS

from .harness import AgentHost, ToolFailed, call, connect, make_repo

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@functools.cache
def _cl100k() -> Any:
    """OpenAI's cl100k_base, from bpe-openai, which ships its table: it works offline (tiktoken downloads it)."""
    with warnings.catch_warnings():
        # bpe-openai 0.1.4 reads its table through importlib.resources' deprecated open_binary.
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        return bpe_openai.get_encoding("cl100k_base")


# Every tool as tools/list must show it: title, readOnlyHint, destructiveHint, idempotentHint, openWorldHint.
# Read-only tools state no destructive/idempotent hint (the spec gives those meaning only for tools that
# write). openWorld: the tool reaches past the platform (a git remote, a backup target) or runs the
# tenant's own commands; tools that only read or change the control plane's state are closed-world.
R, W = True, False
ANNOTATIONS: dict[str, tuple[str, bool, bool | None, bool | None, bool]] = {
    # name: (title, readOnly, destructive, idempotent, openWorld)
    "whoami": ("Who am I", R, None, None, False),
    "platform_status": ("Platform status", R, None, None, False),
    "deploy_service": ("Deploy service", W, False, False, False),
    "update_service": ("Update service", W, False, False, False),
    "list_services": ("List services", R, None, None, False),
    "get_service": ("Get service", R, None, None, False),
    "start_service": ("Start service", W, False, True, False),
    "stop_service": ("Stop service", W, False, True, False),
    "restart_service": ("Restart service", W, False, False, False),
    "delete_service": ("Delete service", W, True, True, False),
    "service_logs": ("Service logs", R, None, None, False),
    "diagnose_service": ("Diagnose service", R, None, None, False),
    "list_events": ("List events", R, None, None, False),
    "set_env": ("Set env vars", W, False, False, False),
    "list_env": ("List env vars", R, None, None, False),
    "unset_env": ("Unset env vars", W, True, True, False),
    "list_revisions": ("List revisions", R, None, None, False),
    "rollback_service": ("Roll back service", W, False, False, False),
    "exec": ("Exec", W, True, False, True),
    "build_from_git": ("Build from git", W, False, False, True),
    "get_build": ("Get build", R, None, None, False),
    "list_builds": ("List builds", R, None, None, False),
    "build_logs": ("Build logs", R, None, None, False),
    "cancel_build": ("Cancel build", W, False, True, False),
    "create_database": ("Create database", W, False, False, False),
    "list_databases": ("List databases", R, None, None, False),
    "get_database": ("Get database", R, None, None, False),
    "database_connection_string": ("Database connection string", R, None, None, False),
    "link_database": ("Link database", W, True, False, False),
    "delete_database": ("Delete database", W, True, True, False),
    "create_backup": ("Create backup", W, False, False, True),
    "list_backups": ("List backups", R, None, None, False),
    "restore_backup": ("Restore backup", W, True, False, True),
    "delete_backup": ("Delete backup", W, True, True, True),
    "list_volumes": ("List volumes", R, None, None, False),
    "delete_volume": ("Delete volume", W, True, True, False),
    "add_domain": ("Add domain", W, False, True, True),  # open world: it asks DNS
    "list_domains": ("List domains", R, None, None, False),
    "remove_domain": ("Remove domain", W, True, False, False),
    "create_api_key": ("Create API key", W, False, False, False),
    "list_api_keys": ("List API keys", R, None, None, False),
    "revoke_api_key": ("Revoke API key", W, True, True, False),
    "ssh_info": ("SSH info", R, None, None, False),
    "add_ssh_key": ("Add SSH key", W, True, True, False),
    "create_sandbox": ("Create sandbox", W, False, False, False),
    "list_sandboxes": ("List sandboxes", R, None, None, False),
    "get_sandbox": ("Get sandbox", R, None, None, False),
    "extend_sandbox": ("Extend sandbox", W, False, False, False),
    "delete_sandbox": ("Delete sandbox", W, True, True, False),
    "create_tenant": ("Create tenant", W, False, False, False),
    "list_nodes": ("List nodes", R, None, None, False),
    "set_node_eligibility": ("Set node eligibility", W, False, True, False),
    "drain_node": ("Drain node", W, True, False, False),
    "list_audit": ("List audit", R, None, None, False),
}


async def test_annotations_tell_the_truth(agenthost: AgentHost) -> None:
    async with connect(agenthost, agenthost.admin_key, "stdio", toolsets="all") as client:
        tools = (await client.list_tools()).tools
    assert sorted(t.name for t in tools) == sorted(ANNOTATIONS)
    for t in tools:
        a = t.annotations
        assert a is not None, t.name
        seen = (t.title, a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
        assert seen == ANNOTATIONS[t.name], t.name
    deletes = {n: ANNOTATIONS[n] for n in ANNOTATIONS if n.startswith("delete_")}
    assert {(d[2], d[3]) for d in deletes.values()} == {(True, True)}, deletes


async def test_tools_are_typed_and_output_schemas_are_full(agenthost: AgentHost) -> None:
    async with connect(agenthost, agenthost.admin_key, "stdio", toolsets="all") as client:
        tools = (await client.list_tools()).tools
    by_name = {t.name: t for t in tools}
    for t in tools:
        assert t.description and len(t.description) < 600, t.name
        assert t.input_schema["type"] == "object", t.name
        out = t.output_schema
        assert out and out.get("type") == "object" and out["properties"], t.name
        assert set(out["required"]) == set(out["properties"]), t.name  # every field of an answer is sent
    deploy = by_name["deploy_service"].input_schema
    assert deploy["required"] == ["name"]  # and one of image or build_id
    assert deploy["properties"]["port"]["maximum"] == 65535
    service = by_name["get_service"].output_schema
    assert service["properties"]["status"]["enum"] == ["deploying", "running", "stopped", "failed"]
    assert service["$defs"]["VolumeMount"]["required"] == ["name", "path"]
    listing = by_name["list_services"].output_schema
    item = listing["$defs"][listing["properties"]["services"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"name", "status", "url"} <= set(item["required"])
    assert item["properties"]["status"]["enum"] == ["deploying", "running", "stopped", "failed"]
    build = by_name["get_build"].output_schema
    assert "succeeded" in build["properties"]["status"]["enum"]


def _tokens(tools: list[Any]) -> int:
    wire = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return len(_cl100k().encode(json.dumps(wire, separators=(",", ":"))))


async def test_tools_list_budget_per_role_and_toolset(agenthost: AgentHost, capsys: pytest.CaptureFixture[str]) -> None:
    """tools/list per role and toolset choice, in cl100k tokens (bpe-openai ships the table: no download)."""
    member = agenthost.tenant("budget")
    async with connect(agenthost, member, "http") as client:
        reader = (await call(client, "create_api_key", {"name": "budget reader", "scope": "read"}))["key"]
    keys = {"admin": agenthost.admin_key, "member": member, "member, read scope": reader}
    choices = {"default": ",".join(DEFAULT_TOOLSETS), "all": "all", **{n: n for n in TOOLSETS}}
    table: dict[str, dict[str, tuple[int, int]]] = {}
    listed: dict[tuple[str, str], set[str]] = {}
    for role, key in keys.items():
        for choice, header in choices.items():
            async with connect(agenthost, key, "http", toolsets=header) as client:
                tools = (await client.list_tools()).tools
            table.setdefault(role, {})[choice] = (_tokens(tools), len(tools))
            listed[role, choice] = {t.name for t in tools}
    lines = [
        f"tools/list in cl100k tokens (tools listed); default = {','.join(DEFAULT_TOOLSETS)}",
        "| key | " + " | ".join(choices) + " |",
        "|---|" + "---|" * len(choices),
        *(f"| {role} | " + " | ".join(f"{tok} ({n})" for tok, n in row.values()) + " |" for role, row in table.items()),
    ]
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(lines) + "\n")
    assert table["member"]["default"][0] <= 8000, table["member"]
    admin_only = {"create_tenant", "list_nodes", "set_node_eligibility", "drain_node", "list_audit"}
    writes = {n for n, a in ANNOTATIONS.items() if not a[1]}
    for (role, choice), names in listed.items():
        assert {"whoami", "platform_status"} <= names, (role, choice)
        if role != "admin":
            assert not names & admin_only, (role, choice)
        if role == "member, read scope":
            assert not names & writes, choice
    assert listed["admin", "all"] == set(ANNOTATIONS)
    assert listed["member", "builds"] == {
        "whoami",
        "platform_status",
        "build_from_git",
        "get_build",
        "list_builds",
        "build_logs",
        "cancel_build",
    }
    assert listed["member", "default"] == listed["member", "services"] | listed["member", "builds"]


async def test_attack_call_a_tool_the_session_does_not_list(agenthost: AgentHost) -> None:
    """A tool hidden from a key's tools/list is refused by the same gate over MCP (both transports) and REST."""
    key = agenthost.tenant("hidden-tools")
    for transport in ("stdio", "http"):
        async with connect(agenthost, key, transport, toolsets="builds") as client:
            assert "deploy_service" not in {t.name for t in (await client.list_tools()).tools}
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "sneaky", "image": "agenthost/base:bookworm"})
            assert err.value.code == "forbidden", transport
            assert "X-AgentHost-Toolsets" in err.value.message or "toolset" in err.value.message
            with pytest.raises(ToolFailed) as err:
                await call(client, "create_tenant", {"name": "mine-now"})
            assert err.value.code == "forbidden", transport
        async with connect(agenthost, key, transport) as client:
            assert (await call(client, "list_services"))["services"] == []
    api = {"Authorization": f"Bearer {key}", "X-AgentHost-Toolsets": "builds"}
    refused = httpx.post(f"{agenthost.url}/v1/tools/deploy_service", headers=api, json={"name": "sneaky"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    listing = httpx.get(f"{agenthost.url}/v1/tools", headers=api).json()["tools"]
    assert {t["name"] for t in listing} == {
        "whoami",
        "platform_status",
        "build_from_git",
        "get_build",
        "list_builds",
        "build_logs",
        "cancel_build",
    }
    bad = httpx.get(f"{agenthost.url}/v1/tools", headers={**api, "X-AgentHost-Toolsets": "services,root"})
    assert bad.status_code == 400 and "root" in bad.json()["error"]["message"]


async def test_progress_only_increases(agenthost: AgentHost, hello_image: str, repo_dir: Path) -> None:
    key = agenthost.tenant("progress")
    repo = make_repo(repo_dir / "progress-app", {"Dockerfile": "FROM agenthost/base:bookworm\nRUN echo built\n"})
    seen: dict[str, list[tuple[float, float | None]]] = {}

    def collect(tool: str) -> Any:
        async def record(progress: float, total: float | None, message: str | None) -> None:
            seen.setdefault(tool, []).append((progress, total))

        return record

    async with connect(agenthost, key, "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "steps", "image": hello_image, "port": 8000},
            progress_callback=collect("deploy_service"),
        )
        assert svc["status"] == "running"
        out = await call(
            client,
            "exec",
            {"service": "steps", "command": "echo one; sleep 1; echo two; sleep 1; echo three"},
            progress_callback=collect("exec"),
        )
        assert out["exit_code"] == 0
        build = await call(
            client,
            "build_from_git",
            {"git_url": str(repo), "wait_timeout_s": 300},
            progress_callback=collect("build_from_git"),
        )
        assert build["status"] == "succeeded", build
        await call(client, "delete_service", {"service": "steps", "confirm": True})
    for tool in ("deploy_service", "exec", "build_from_git"):
        values = [p for p, _ in seen.get(tool, [])]
        assert len(values) >= 2, (tool, seen.get(tool))
        assert all(a < b for a, b in zip(values, values[1:], strict=False)), (tool, values)
        for progress, total in seen[tool]:
            assert total is None or progress <= total, (tool, progress, total)
    # A deploy waits against a known budget, so its last reports carry a total.
    assert seen["deploy_service"][-1][1] is not None, seen["deploy_service"]


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
    refuse = ["Delete service 'keep'"]

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": not params.message.startswith(tuple(refuse))})

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
        refuse.clear()  # the user changes their mind
        await call(client, "delete_service", {"service": "keep"})
