"""Tenant B can neither see nor touch tenant A's service, through any service tool."""

from __future__ import annotations

import httpx
import pytest

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_other_tenant_cannot_see_or_touch(agenthost: AgentHost, hello_image: str, transport: str) -> None:
    key_a = agenthost.tenant(f"alpha-{transport}")
    key_b = agenthost.tenant(f"beta-{transport}")
    async with connect(agenthost, key_a, transport) as a:
        svc = await call(
            a, "deploy_service", {"name": "private", "image": hello_image, "port": 8000, "env": {"K": "v"}}
        )
        assert svc["status"] == "running"
        async with connect(agenthost, key_b, transport) as b:
            assert (await call(b, "list_services"))["services"] == []
            counts = (await call(b, "platform_status"))["counts"]
            assert counts["services"] == 0 and "tenants" not in counts  # nothing about other tenants
            for ref in ("private", svc["id"]):
                attempts: list[tuple[str, dict[str, object]]] = [
                    ("get_service", {"service": ref}),
                    ("start_service", {"service": ref}),
                    ("stop_service", {"service": ref}),
                    ("restart_service", {"service": ref}),
                    ("service_logs", {"service": ref}),
                    ("set_env", {"service": ref, "vars": {"K": "stolen"}}),
                    ("list_env", {"service": ref, "reveal": True}),
                    ("unset_env", {"service": ref, "keys": ["K"]}),
                    ("delete_service", {"service": ref, "confirm": True}),
                ]
                for tool, args in attempts:
                    with pytest.raises(ToolFailed) as err:
                        await call(b, tool, args)
                    assert err.value.code == "not_found", (tool, err.value)
            # B may use the same name in its own namespace.
            mine = await call(
                b, "deploy_service", {"name": "private", "image": hello_image, "port": 8000, "wait": False}
            )
            assert mine["id"] != svc["id"]
            await call(b, "delete_service", {"service": "private", "confirm": True})
        # A's service is untouched.
        after = await call(a, "get_service", {"service": "private"})
        assert after["status"] == "running"
        assert httpx.get(after["internal_url"], timeout=5).text == "hello world"
        assert (await call(a, "list_env", {"service": "private", "reveal": True}))["vars"] == {"K": "v"}
        await call(a, "delete_service", {"service": "private", "confirm": True})


async def test_member_cannot_use_admin_tools(agenthost: AgentHost) -> None:
    key = agenthost.tenant("member-only")
    async with connect(agenthost, key, "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_tenant", {"name": "sneaky"})
        assert err.value.code == "forbidden"
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_api_key", {"name": "x", "role": "admin"})
        assert err.value.code == "forbidden"
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_api_key", {"name": "x", "tenant": "admin"})
        assert err.value.code == "forbidden"
