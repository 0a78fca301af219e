"""The service lifecycle through a real MCP client, over stdio and streamable HTTP, on real Docker."""

from __future__ import annotations

import docker
import httpx
import pytest

from .harness import AgentHost, ToolFailed, call, connect, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5)


def _containers(client: docker.DockerClient, tenant_id: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"agenthost.tenant={tenant_id}"})
    return [c.name for c in found]


async def test_deploy_lifecycle_env_logs_delete(
    agenthost: AgentHost, hello_image: str, transport: str, docker_client: docker.DockerClient
) -> None:
    tenant = f"life-{transport}"
    key = agenthost.tenant(tenant)
    progress: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with connect(agenthost, key, transport) as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": "agents"}},
            progress_callback=on_progress,
        )
        assert svc["status"] == "running", svc
        assert svc["url"].startswith("http://127.0.0.1:")
        assert _get(svc["url"]).text == "hello agents"
        assert any("waiting" in m for m in progress), progress
        assert svc["env_keys"] == ["GREETING"]

        listed = await call(client, "list_services")
        assert [s["name"] for s in listed["services"]] == ["web"]

        stopped = await call(client, "stop_service", {"service": "web"})
        assert stopped["status"] == "stopped" and stopped["url"] is None
        with pytest.raises(httpx.HTTPError):
            _get(svc["url"]).raise_for_status()

        started = await call(client, "start_service", {"service": "web"})
        assert started["status"] == "running"
        assert _get(started["url"]).text == "hello agents"

        restarted = await call(client, "restart_service", {"service": "web"})
        assert restarted["status"] == "running"
        assert _get(restarted["url"]).text == "hello agents"

        logs = await call(client, "service_logs", {"service": "web", "tail": 50})
        assert "hello app starting" in logs["output"]
        assert "request /" in logs["output"]
        assert logs["output"].startswith("<<<UNTRUSTED WORKLOAD OUTPUT")

        env = await call(client, "set_env", {"service": "web", "vars": {"GREETING": "again", "EXTRA": "s3cr3t-value"}})
        assert env["vars"] == {"EXTRA": "****", "GREETING": "****"}
        svc = await call(client, "get_service", {"service": "web"})
        assert _get(svc["url"]).text == "hello again"
        container = docker_client.containers.get(f"ah-{svc['id']}")
        assert container.exec_run(["printenv", "EXTRA"]).output.decode().strip() == "s3cr3t-value"

        revealed = await call(client, "list_env", {"service": "web", "reveal": True})
        assert revealed["vars"] == {"EXTRA": "s3cr3t-value", "GREETING": "again"}
        env = await call(client, "unset_env", {"service": "web", "keys": ["EXTRA"]})
        assert list(env["vars"]) == ["GREETING"]
        svc = await call(client, "get_service", {"service": "web"})
        container = docker_client.containers.get(f"ah-{svc['id']}")
        assert container.exec_run(["printenv", "EXTRA"]).exit_code != 0

        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_service", {"service": "web"})
        assert err.value.code == "confirmation_required"
        deleted = await call(client, "delete_service", {"service": "web", "confirm": True})
        assert deleted["name"] == "web"
        assert _containers(docker_client, agenthost.tenant_ids[tenant]) == []
        assert (await call(client, "list_services"))["services"] == []


async def test_wait_false_returns_deploying_then_running(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("nowait")
    async with connect(agenthost, key, "stdio") as client:
        slow_start = ["sh", "-c", "sleep 3; exec python3 /app/app.py"]
        svc = await call(
            client,
            "deploy_service",
            {"name": "quick", "image": hello_image, "port": 8000, "command": slow_start, "wait": False},
        )
        assert svc["status"] == "deploying"
        assert svc["url"] is None
        svc = await until(client, "get_service", {"service": "quick"}, lambda s: s["status"] == "running")
        assert _get(svc["url"]).text == "hello world"
        await call(client, "delete_service", {"service": "quick", "confirm": True})


async def test_crash_on_start_is_failed_with_log_tail(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("crashy")
    async with connect(agenthost, key, "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "boom",
                "image": hello_image,
                "port": 8000,
                "command": ["sh", "-c", "echo kaboom-marker >&2; exit 3"],
            },
        )
        assert svc["status"] == "failed"
        assert svc["url"] is None
        assert "exited with code 3" in svc["last_error"]
        assert "kaboom-marker" in svc["last_error"]
        again = await call(client, "get_service", {"service": "boom"})
        assert again["status"] == "failed"
        await call(client, "delete_service", {"service": "boom", "confirm": True})
    assert _containers(docker_client, agenthost.tenant_ids["crashy"]) == []


async def test_update_applies_or_rolls_back(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("updates")
    async with connect(agenthost, key, "http") as client:
        await call(client, "deploy_service", {"name": "app", "image": hello_image, "port": 8000})
        updated = await call(client, "update_service", {"service": "app", "memory_mb": 320, "env": {"GREETING": "v2"}})
        assert updated["status"] == "running" and updated["memory_mb"] == 320
        assert _get(updated["url"]).text == "hello v2"

        broken = ["sh", "-c", "echo new-version-broken >&2; exit 9"]
        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "app", "command": broken, "env": {"GREETING": "v3"}})
        assert err.value.code == "workload_failed"
        assert "rolled back" in err.value.message and "new-version-broken" in err.value.message
        after = await call(client, "get_service", {"service": "app"})
        assert after["status"] == "running" and after["command"] is None
        assert _get(after["url"]).text == "hello v2"  # the previous version, env included

        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "app", "image": "missing:0"})
        assert err.value.code == "image_not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "app"})
        assert err.value.code == "invalid_input"
        await call(client, "delete_service", {"service": "app", "confirm": True})
