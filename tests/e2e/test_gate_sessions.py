"""MCP sessions, attacked: a session belongs to the key that opened it, a tenant opens only so many, opening
one counts against the rate limit, and a stdio session stops working the moment its key is revoked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from .harness import INITIALIZE, AgentHost, ToolFailed, call, connect, mcp_post, sse_messages

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

DISCOVER = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "server/discover",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}
WHOAMI = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


@pytest.fixture
def own_host(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[AgentHost]:
    """A platform of the test's own, with the settings the test passes as its parameter."""
    host = AgentHost(data_dir=tmp_path_factory.mktemp("gate"), env=dict(request.param))
    host.init()
    yield host
    host.stop()


def _opened(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert sse_messages(response)[0]["result"]["serverInfo"]["name"] == "agenthost"
    return response.headers["mcp-session-id"]


async def test_attack_another_key_cannot_use_a_session(agenthost: AgentHost) -> None:
    owner = agenthost.tenant("gate-owner")
    stranger = agenthost.tenant("gate-stranger")
    sessions: list[str] = []
    async with connect(agenthost, owner, "http", session_ids=sessions, mode="legacy") as client:
        assert (await call(client, "whoami"))["tenant"] == "gate-owner"
        async with connect(agenthost, owner, "http") as other_client:
            second_key = (await call(other_client, "create_api_key", {"name": "gate-second"}))["key"]
        assert len(sessions) == 1
        for key in (stranger, second_key):  # another tenant, and another key of the same tenant
            hijack = mcp_post(agenthost, key, WHOAMI, session=sessions[0])
            assert hijack.status_code == 404, hijack.text
            assert hijack.json()["error"]["code"] == "not_found" and "gate-owner" not in hijack.text
            closing = mcp_post(agenthost, key, b"", session=sessions[0], method="DELETE")
            assert closing.status_code == 404, closing.text
        assert (await call(client, "whoami"))["tenant"] == "gate-owner"  # the session still works for its key


@pytest.mark.parametrize("own_host", [{"AGENTHOST_MCP_SESSIONS_PER_TENANT": "2"}], indirect=True)
def test_attack_sessions_beyond_the_cap_are_refused(own_host: AgentHost) -> None:
    key = own_host.tenant("capped")
    first, _second = (_opened(mcp_post(own_host, key, INITIALIZE)) for _ in range(2))
    refused = mcp_post(own_host, key, INITIALIZE)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and "2 open MCP sessions" in error["message"], error
    assert "DELETE" in error["hint"], error
    _opened(mcp_post(own_host, own_host.tenant("neighbour"), INITIALIZE))  # another tenant is not held up

    closed = mcp_post(own_host, key, b"", session=first, method="DELETE")
    assert closed.status_code == 200, closed.text
    _opened(mcp_post(own_host, key, INITIALIZE))  # the closed session's slot is free again


@pytest.mark.parametrize(
    "own_host", [{"AGENTHOST_RATE_LIMIT_PER_MINUTE": "5", "AGENTHOST_MCP_SESSIONS_PER_TENANT": "50"}], indirect=True
)
async def test_attack_initialize_flood_is_rate_limited(own_host: AgentHost) -> None:
    key = own_host.tenant("flood")
    answers = []
    for _ in range(12):
        answers.append(mcp_post(own_host, key, INITIALIZE))
        if answers[-1].status_code != 200:
            break
    assert answers[-1].status_code == 429, [a.status_code for a in answers]
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert 5 <= len(answers) - 1 <= 6, [a.status_code for a in answers]  # a burst of a minute's allowance

    # The default client opens with server/discover (the 2026 protocol): that counts the same way.
    modern = own_host.tenant("flood-modern")
    connected = 0
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True):
        for _ in range(12):
            async with connect(own_host, modern, "http"):
                connected += 1
    assert 5 <= connected <= 6, connected
    refused = mcp_post(
        own_host, modern, DISCOVER, extra={"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}
    )
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited", refused.text


async def test_attack_revoked_key_stops_working_in_an_open_stdio_session(agenthost: AgentHost) -> None:
    owner = agenthost.tenant("gate-stdio")
    api = httpx.Client(base_url=agenthost.url, headers={"Authorization": f"Bearer {owner}"}, timeout=60)
    made = api.post("/v1/tools/create_api_key", json={"name": "gate-stdio-victim"}).json()
    async with connect(agenthost, made["key"], "stdio") as client:
        assert (await call(client, "whoami"))["key_id"] == made["info"]["id"]
        api.post("/v1/tools/revoke_api_key", json={"key_id": made["info"]["id"], "confirm": True}).raise_for_status()
        with pytest.raises(ToolFailed) as err:
            await call(client, "whoami")
        assert err.value.code == "unauthorized" and "revoked" in err.value.message
        with pytest.raises(MCPError) as resource_err:
            await client.read_resource("agenthost://services")
        assert "unauthorized" in str(resource_err.value)
        with pytest.raises(MCPError) as prompt_err:
            await client.get_prompt("debug_service", {"service": "web"})
        assert "unauthorized" in str(prompt_err.value)
