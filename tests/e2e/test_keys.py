"""API keys: created, listed, scoped, revoked; admins create tenants through a tool."""

from __future__ import annotations

import httpx
import pytest

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_keys_scopes_and_revocation(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("keys")
    async with connect(agenthost, key, "http") as client:
        me = await call(client, "whoami")
        assert me["tenant"] == "keys" and me["role"] == "member"
        reader = await call(client, "create_api_key", {"name": "ci reader", "scope": "read"})
        assert reader["key"].startswith("ah_") and reader["info"]["scope"] == "read"
        listed = await call(client, "list_api_keys")
        assert {k["name"] for k in listed["keys"]} >= {"ci reader"}
        assert all("key" not in k for k in listed["keys"])

    async with connect(agenthost, reader["key"], "http") as ro:
        assert (await call(ro, "list_services"))["services"] == []
        with pytest.raises(ToolFailed) as err:
            await call(ro, "deploy_service", {"name": "x", "image": hello_image})
        assert err.value.code == "read_only"

    async with connect(agenthost, key, "http") as client:
        revoked = await call(client, "revoke_api_key", {"key_id": reader["info"]["id"], "confirm": True})
        assert revoked["revoked"] is True
    response = httpx.post(
        f"{agenthost.url}/v1/tools/whoami", json={}, headers={"Authorization": f"Bearer {reader['key']}"}
    )
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


async def test_admin_creates_tenant_through_tool(agenthost: AgentHost) -> None:
    async with connect(agenthost, agenthost.admin_key, "stdio") as admin:
        made = await call(admin, "create_tenant", {"name": "via-tool"})
        assert made["tenant"]["name"] == "via-tool"
        with pytest.raises(ToolFailed) as err:
            await call(admin, "create_tenant", {"name": "via-tool"})
        assert err.value.code == "conflict"
        with pytest.raises(ToolFailed) as err:
            await call(admin, "revoke_api_key", {"key_id": agenthost.admin_key.split(".")[0]})
        assert err.value.code == "invalid_input"  # the last admin key cannot be revoked
    async with connect(agenthost, made["key"]["key"], "stdio") as tenant:
        assert (await call(tenant, "whoami"))["tenant"] == "via-tool"
