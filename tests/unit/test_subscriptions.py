"""MCP resource subscriptions (``subscriptions/listen``, protocol 2026-07-28) over the in-memory engine, through the
SDK's client on an in-memory transport, as ``agenthost mcp`` serves them: a stream hears its own tenant's service
change, and never another tenant's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated

from mcp_server.app import build_mcp
from mcp_server.state import AppState
from mcp_server.subscriptions import updated_uris
from orchestrator.models import Event
from orchestrator.platform import Platform
from orchestrator.ratelimit import RateLimiter
from orchestrator.settings import Settings
from tests.fakes import FakeBackend, FakeBuilder

from .site import APP_IMAGE


@asynccontextmanager
async def _clients(settings: Settings, backend: FakeBackend, *tenants: str) -> AsyncIterator[list[Client]]:
    """One MCP client per tenant, each on its own server as `agenthost mcp` runs one per key, on one platform."""
    async with Platform.open(settings, backend=backend, builder=FakeBuilder()) as platform, AsyncExitStack() as stack:
        clients = []
        for name in tenants:
            key = (await platform.tenants.create_tenant(None, name))[1].key
            state = AppState(platform, RateLimiter(600), stdio_key=key)
            clients.append(await stack.enter_async_context(Client(build_mcp(lambda s=state: s))))
        yield clients


async def _call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result
    assert result.structured_content is not None
    return result.structured_content


async def _next_uri(subscription: Any) -> str:
    with anyio.fail_after(10):
        event = await subscription.__anext__()
    assert isinstance(event, ResourceUpdated), event
    return event.uri


@pytest.mark.anyio
async def test_a_stream_hears_its_service_stop_and_never_another_tenants(
    app_settings: Settings, fake_backend: FakeBackend
) -> None:
    async with _clients(app_settings, fake_backend, "victim", "spy") as (victim, spy):
        svc = await _call(victim, "deploy_service", name="web", image=APP_IMAGE, port=8000)
        by_id = f"agenthost://services/{svc['id']}"
        async with (
            victim.listen(resource_subscriptions=["agenthost://services/web", by_id]) as mine,
            spy.listen(resource_subscriptions=["agenthost://services/web", by_id, "agenthost://services/x"]) as theirs,
        ):
            await _call(victim, "stop_service", service="web")
            assert {await _next_uri(mine), await _next_uri(mine)} == {"agenthost://services/web", by_id}
            # The spy's first news is its own deploy: the victim's stop, earlier, never reached its stream.
            await _call(spy, "deploy_service", name="x", image=APP_IMAGE, port=8000)
            assert await _next_uri(theirs) == "agenthost://services/x"


@pytest.mark.anyio
async def test_the_events_resource_is_the_tenants_list_events(
    app_settings: Settings, fake_backend: FakeBackend
) -> None:
    async with _clients(app_settings, fake_backend, "solo") as (client,):
        await _call(client, "deploy_service", name="web", image=APP_IMAGE, port=8000)
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "agenthost://events" in uris
        read = await client.read_resource("agenthost://events")
        assert '"type":"deployed"' in read.contents[0].text  # type: ignore[union-attr]


def test_a_services_event_updates_its_resources_by_name_and_id_and_the_lists() -> None:
    common = {"id": 1, "at": "2026-01-01T00:00:00+00:00", "type": "stopped", "cause": "stop_service", "exit_code": None}
    stopped = Event(kind="service", target="web", target_id="svc_1", **common)
    assert updated_uris(stopped) == [
        "agenthost://events",
        "agenthost://services",
        "agenthost://services/web",
        "agenthost://services/svc_1",
    ]
    built = Event(kind="build", target="app", target_id="b_1", **{**common, "type": "succeeded"})
    assert updated_uris(built) == ["agenthost://events"]
