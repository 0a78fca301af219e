"""The wire contract an agent codes against: strict arguments, machine-readable errors over MCP and REST,
JSON-RPC codes for resources and prompts, a clean stdio start, compact JSON text."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from importlib.metadata import version

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from .harness import VENV_BIN, AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_attack_unknown_argument_is_refused_not_ignored(agenthost: AgentHost, transport: str) -> None:
    key = agenthost.tenant(f"strict-{transport}")
    async with connect(agenthost, key, transport) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert all(t.input_schema.get("additionalProperties") is False for t in listed.values())
        # A typo must not be dropped: the call would run without what the agent meant to say.
        with pytest.raises(ToolFailed) as err:
            await call(client, "list_services", {"limit": 1, "extra": 1})
        assert err.value.code == "invalid_input", err.value
        assert "'extra'" in err.value.message and "'limit'" in err.value.message, err.value.message
        assert "takes no arguments" in err.value.message, err.value.message
        with pytest.raises(ToolFailed) as err:
            await call(client, "get_service", {"service": "ghost", "verbose": True})
        assert err.value.code == "invalid_input", err.value  # refused before it looks anything up
        assert "'verbose'" in err.value.message and "service" in err.value.message, err.value.message


def test_attack_unknown_argument_is_refused_over_rest(agenthost: AgentHost) -> None:
    key = agenthost.tenant("strict-rest")
    answer = httpx.post(
        f"{agenthost.url}/v1/tools/get_service",
        json={"service": "ghost", "verbose": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and "'verbose'" in error["message"], error
    assert "service" in error["message"], error


async def test_tool_error_carries_code_message_and_hint(agenthost: AgentHost, transport: str) -> None:
    key = agenthost.tenant(f"wire-{transport}")
    async with connect(agenthost, key, transport) as client:
        result = await client.call_tool("get_service", {"service": "ghost"})
        assert result.is_error
        error = result.structured_content
        assert error is not None and error["code"] == "not_found", result
        assert "ghost" in error["message"] and "list_services" in error["hint"], error
        assert set(error) == {"code", "message", "hint"}, error
        assert result.meta is not None and result.meta["agenthost/code"] == "not_found", result.meta
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith("[not_found] "), text
        assert "Error executing tool" not in text, text

        # The SDK's own refusals (a malformed argument, an unknown tool) carry the same shape.
        bad = await client.call_tool("get_service", {"service": 7})
        assert bad.is_error and bad.structured_content is not None, bad
        assert bad.structured_content["code"] == "invalid_input" and "service" in bad.structured_content["message"]
        assert bad.content[0].text.startswith("[invalid_input] "), bad.content  # type: ignore[union-attr]
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error and unknown.structured_content is not None, unknown
        assert unknown.structured_content["code"] == "not_found", unknown.structured_content
        assert unknown.meta is not None and unknown.meta["agenthost/code"] == "not_found", unknown.meta


async def test_text_content_is_compact_json(agenthost: AgentHost, transport: str) -> None:
    key = agenthost.tenant(f"compact-{transport}")
    async with connect(agenthost, key, transport) as client:
        result = await client.call_tool("whoami", {})
        text = result.content[0].text  # type: ignore[union-attr]
        assert json.loads(text) == result.structured_content
        assert text == json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False), text
        listing = await client.read_resource("agenthost://services")
        body = listing.contents[0].text  # type: ignore[union-attr]
        assert body == json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False), body


async def test_server_info_version_is_the_package_version(agenthost: AgentHost, transport: str) -> None:
    key = agenthost.tenant(f"version-{transport}")
    async with connect(agenthost, key, transport) as client:
        assert client.server_info is not None
        assert client.server_info.name == "agenthost"
        assert client.server_info.version == version("agenthost")


async def test_missing_resource_is_invalid_params_with_a_code(agenthost: AgentHost, transport: str) -> None:
    key = agenthost.tenant(f"resource-{transport}")
    async with connect(agenthost, key, transport) as client:
        for uri in ("agenthost://services/ghost", "agenthost://services/ghost/logs", "agenthost://nothing/here"):
            with pytest.raises(MCPError) as err:
                await client.read_resource(uri)
            assert err.value.error.code == INVALID_PARAMS, (uri, err.value.error)
            assert isinstance(err.value.error.data, dict), (uri, err.value.error)
            assert err.value.error.data["code"] == "not_found", (uri, err.value.error.data)
            assert err.value.error.message.startswith("[not_found] "), err.value.error.message


async def test_prompt_argument_errors_are_invalid_params(agenthost: AgentHost, transport: str) -> None:
    key = agenthost.tenant(f"prompt-{transport}")
    async with connect(agenthost, key, transport) as client:
        cases = [
            ("debug_service", {}, "invalid_input", "service"),
            ("debug_service", {"service": "web", "extra": "x"}, "invalid_input", "extra"),
            ("no_such_prompt", {}, "not_found", "no_such_prompt"),
        ]
        for name, arguments, code, mention in cases:
            with pytest.raises(MCPError) as err:
                await client.get_prompt(name, arguments)
            assert err.value.error.code == INVALID_PARAMS, (name, arguments, err.value.error)
            assert isinstance(err.value.error.data, dict), err.value.error
            assert err.value.error.data["code"] == code, err.value.error.data
            assert mention in err.value.error.message, err.value.error.message


@pytest.fixture
def limited_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    host = AgentHost(data_dir=tmp_path_factory.mktemp("contract"), env={"AGENTHOST_RATE_LIMIT_PER_MINUTE": "3"})
    host.init()
    yield host
    host.stop()


def test_rate_limit_answers_429_with_retry_after(limited_host: AgentHost) -> None:
    key = limited_host.tenant("hasty")
    api = httpx.Client(base_url=limited_host.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    answers = [api.post("/v1/tools/whoami", json={}) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200], [a.text for a in answers]
    refused = answers[3]
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["retry_after_s"] > 0, error
    assert int(refused.headers["retry-after"]) >= 1, refused.headers


def test_quota_and_confirmation_have_their_own_statuses(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("statuses")
    api = httpx.Client(base_url=agenthost.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    over = api.post("/v1/tools/deploy_service", json={"name": "big", "image": hello_image, "memory_mb": 8000})
    assert over.status_code == 403, over.text  # not 429: waiting does not help
    assert over.json()["error"]["code"] == "quota_exceeded" and "retry-after" not in over.headers
    made = api.post("/v1/tools/deploy_service", json={"name": "keep", "image": hello_image, "wait": False})
    assert made.status_code == 200, made.text
    unconfirmed = api.post("/v1/tools/delete_service", json={"service": "keep"})
    assert unconfirmed.status_code == 409, unconfirmed.text
    assert unconfirmed.json()["error"]["code"] == "confirmation_required"
    api.post("/v1/tools/delete_service", json={"service": "keep", "confirm": True}).raise_for_status()


def test_unknown_routes_answer_json_errors(agenthost: AgentHost) -> None:
    key = agenthost.tenant("routes")
    headers = {"Authorization": f"Bearer {key}"}
    missing = httpx.get(f"{agenthost.url}/v1/nothing", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", missing.text
    wrong_method = httpx.get(f"{agenthost.url}/v1/tools/whoami", headers=headers)
    assert wrong_method.status_code == 405, wrong_method.text
    assert wrong_method.json()["error"]["code"] == "invalid_input", wrong_method.text
    assert "POST" in wrong_method.json()["error"]["hint"], wrong_method.text


def test_stdio_with_a_bad_key_says_so_in_one_line(agenthost: AgentHost) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "agenthost"), "mcp"],
        env=agenthost.process_env("ah_0000000000000000.nope"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "unauthorized" in lines[0] and "AGENTHOST_API_KEY" in lines[0], lines
