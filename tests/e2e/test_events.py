"""The event log and the audit log through a real MCP client, against Docker: a service's deploy, crash (with its
exit code) and restart are events in order with their cause; another tenant sees none of them, by listing or by
subscription; the audit log is for admins and shows a member's calls; a resource subscription hears its
service stop."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

_CRASH = ["sh", "-c", "echo kaboom >&2; exit 3"]


async def _events(client: Client, **args: Any) -> list[dict[str, Any]]:
    return list((await call(client, "list_events", args))["events"])


async def test_a_deploy_a_crash_and_a_restart_are_events_in_order(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("ev-story")
    async with connect(agenthost, key, "http") as client:
        boom = {"name": "boom", "image": hello_image, "port": 8000, "command": _CRASH}
        svc = await call(client, "deploy_service", boom)
        assert svc["status"] == "failed"
        assert (await call(client, "restart_service", {"service": "boom"}))["status"] == "failed"

        events = await _events(client, target="boom")
        story = [(e["type"], e["exit_code"]) for e in reversed(events)]
        assert story == [("deployed", None), ("crashed", 3), ("restarted", None), ("crashed", 3)]
        assert {(e["kind"], e["target"], e["target_id"]) for e in events} == {("service", "boom", svc["id"])}
        deployed, crashed, restarted, _ = reversed(events)
        assert deployed["cause"].startswith("deploy_service: image ")
        assert crashed["cause"].startswith("exited with code 3") and "kaboom" not in crashed["cause"]
        assert restarted["cause"] == "restart_service"

        older = await _events(client, target="boom", limit=2, before=events[1]["id"])
        assert [e["id"] for e in older] == [events[2]["id"], events[3]["id"]]
        resource = await client.read_resource("agenthost://events")
        assert [e["id"] for e in json.loads(resource.contents[0].text)["events"]] == [e["id"] for e in events]
        await call(client, "delete_service", {"service": "boom", "confirm": True})


async def test_attack_read_another_tenants_events(agenthost: AgentHost, hello_image: str) -> None:
    """A tenant lists events by the name and the id of another tenant's service, and gets nothing of it."""
    async with connect(agenthost, agenthost.tenant("ev-victim"), "http") as victim:
        svc = await call(victim, "deploy_service", {"name": "web", "image": hello_image, "port": 8000, "wait": False})
        assert await _events(victim, target="web")
        async with connect(agenthost, agenthost.tenant("ev-attacker"), "stdio") as attacker:
            assert await _events(attacker) == []
            assert await _events(attacker, target=svc["id"]) == []
            assert await _events(attacker, target="web", kind="service") == []
            listing = json.loads((await attacker.read_resource("agenthost://events")).contents[0].text)
            assert listing == {"events": []}
        await call(victim, "delete_service", {"service": "web", "confirm": True})


async def test_list_audit_is_refused_to_a_member_and_shows_the_admin_a_members_calls(agenthost: AgentHost) -> None:
    key = agenthost.tenant("ev-audit")
    async with connect(agenthost, key, "http") as member:
        me = await call(member, "whoami")
        with pytest.raises(ToolFailed) as err:
            await call(member, "deploy_service", {"name": "ghost", "image": "ah-test/never-built:1", "port": 8000})
        assert err.value.code == "image_not_found"
        with pytest.raises(ToolFailed) as err:
            await call(member, "stop_service", {"service": "nothing"})
        assert err.value.code == "not_found"
        with pytest.raises(ToolFailed) as err:
            await call(member, "list_audit")
        assert err.value.code == "forbidden"
        assert "list_audit" not in {t.name for t in (await member.list_tools()).tools}
    async with connect(agenthost, agenthost.admin_key, "stdio") as admin:
        entries = (await call(admin, "list_audit", {"tenant": "ev-audit"}))["entries"]
    seen = [(e["key_id"], e["action"], e["target"], e["outcome"]) for e in entries]
    assert seen == [
        (me["key_id"], "stop_service", "nothing", "not_found"),
        (me["key_id"], "deploy_service", "ghost", "image_not_found"),
    ]
    assert {e["tenant"] for e in entries} == {"ev-audit"}


async def _next_uri(subscription: Any) -> str:
    with anyio.fail_after(60):
        event = await subscription.__anext__()
    assert isinstance(event, ResourceUpdated), event
    return event.uri


async def test_a_subscription_hears_its_service_stop(agenthost: AgentHost, hello_image: str, transport: str) -> None:
    async with connect(agenthost, agenthost.tenant(f"ev-sub-{transport}"), transport) as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        by_id = f"agenthost://services/{svc['id']}"
        async with client.listen(resource_subscriptions=["agenthost://services/web", by_id]) as subscription:
            await call(client, "stop_service", {"service": "web"})
            heard = {await _next_uri(subscription), await _next_uri(subscription)}
        assert heard == {"agenthost://services/web", by_id}
        events = await _events(client, target="web", limit=1)
        assert events[0]["type"] == "stopped"
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_attack_subscribe_to_another_tenants_service(agenthost: AgentHost, hello_image: str) -> None:
    """A tenant subscribes to the URIs of another tenant's service, by its name (which it shares) and by its id.
    The victim's service stops first, then the attacker deploys one of its own: the first thing the attacker
    hears is its own deploy, so the victim's stop was never sent to it (events reach a stream in order)."""
    async with (
        connect(agenthost, agenthost.tenant("ev-sub-victim"), "http") as victim,
        connect(agenthost, agenthost.tenant("ev-sub-attacker"), "http") as attacker,
    ):
        svc = await call(victim, "deploy_service", {"name": "web", "image": hello_image, "port": 8000, "wait": False})
        spied = ["agenthost://services/web", f"agenthost://services/{svc['id']}", "agenthost://services/mine"]
        async with attacker.listen(resource_subscriptions=spied) as subscription:
            await call(victim, "stop_service", {"service": "web"})
            await call(attacker, "deploy_service", {"name": "mine", "image": hello_image, "port": 8000, "wait": False})
            assert await _next_uri(subscription) == "agenthost://services/mine"
        await call(victim, "delete_service", {"service": "web", "confirm": True})
        await call(attacker, "delete_service", {"service": "mine", "confirm": True})
