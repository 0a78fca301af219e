"""The service lifecycle through a real MCP client, over stdio and streamable HTTP, on real Docker."""

from __future__ import annotations

import docker
import httpx
import pytest

from .engine import engine_objects
from .harness import AgentHost, ToolFailed, call, connect, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


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
        assert svc["internal_url"].startswith("http://127.0.0.1:")
        assert httpx.get(svc["internal_url"], timeout=5).text == "hello agents"
        assert any("waiting" in m for m in progress), progress
        assert svc["env_keys"] == ["GREETING"]

        listed = await call(client, "list_services")
        assert [s["name"] for s in listed["services"]] == ["web"]

        stopped = await call(client, "stop_service", {"service": "web"})
        assert stopped["status"] == "stopped" and stopped["internal_url"] is None
        with pytest.raises(httpx.HTTPError):
            httpx.get(svc["internal_url"], timeout=5).raise_for_status()

        started = await call(client, "start_service", {"service": "web"})
        assert started["status"] == "running"
        assert httpx.get(started["internal_url"], timeout=5).text == "hello agents"

        restarted = await call(client, "restart_service", {"service": "web"})
        assert restarted["status"] == "running"
        assert httpx.get(restarted["internal_url"], timeout=5).text == "hello agents"

        logs = await call(client, "service_logs", {"service": "web", "tail": 50})
        assert "hello app starting" in logs["output"]
        assert "request /" in logs["output"]
        assert logs["output"].startswith("<<<UNTRUSTED WORKLOAD OUTPUT")

        env = await call(client, "set_env", {"service": "web", "vars": {"GREETING": "again", "EXTRA": "s3cr3t-value"}})
        assert env["vars"] == {"EXTRA": "****", "GREETING": "****"}
        svc = await call(client, "get_service", {"service": "web"})
        assert httpx.get(svc["internal_url"], timeout=5).text == "hello again"
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
        assert engine_objects(docker_client, agenthost.tenant_ids[tenant])["containers"] == []
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
        assert svc["internal_url"] is None
        svc = await until(client, "get_service", {"service": "quick"}, lambda s: s["status"] == "running")
        assert httpx.get(svc["internal_url"], timeout=5).text == "hello world"
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
        assert svc["internal_url"] is None
        assert "exited with code 3" in svc["last_error"]
        assert "kaboom-marker" in svc["last_error"]
        again = await call(client, "get_service", {"service": "boom"})
        assert again["status"] == "failed"
        await call(client, "delete_service", {"service": "boom", "confirm": True})
    assert engine_objects(docker_client, agenthost.tenant_ids["crashy"])["containers"] == []


async def test_update_applies_or_rolls_back(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("updates")
    async with connect(agenthost, key, "http") as client:
        await call(client, "deploy_service", {"name": "app", "image": hello_image, "port": 8000})
        updated = await call(client, "update_service", {"service": "app", "memory_mb": 320, "env": {"GREETING": "v2"}})
        assert updated["status"] == "running" and updated["memory_mb"] == 320
        assert httpx.get(updated["internal_url"], timeout=5).text == "hello v2"

        broken = ["sh", "-c", "echo new-version-broken >&2; exit 9"]
        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "app", "command": broken, "env": {"GREETING": "v3"}})
        assert err.value.code == "workload_failed"
        assert "rolled back" in err.value.message and "new-version-broken" in err.value.message
        after = await call(client, "get_service", {"service": "app"})
        assert after["status"] == "running" and after["command"] is None
        assert httpx.get(after["internal_url"], timeout=5).text == "hello v2"  # the previous version, env included

        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "app", "image": "ah-test/missing:0"})
        assert err.value.code == "image_not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "app"})
        assert err.value.code == "invalid_input"
        await call(client, "delete_service", {"service": "app", "confirm": True})


async def test_attack_deploy_by_id_digest_or_private_image_is_refused(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    """A tenant names an image it may not run: by id, id prefix or digest (which the engine resolves to
    any image on the host), or an operator's private tag. deploy_service and update_service refuse each with
    image_not_allowed and a hint naming what is allowed; nothing is made, the running service is untouched."""
    image = docker_client.images.get(hello_image)
    hex_id = image.id.removeprefix("sha256:")
    image.tag("ah-private/secret", "1")
    refused = [hex_id[:12], hex_id[:1], hex_id, image.id, f"sha256:{hex_id[:12]}", "ah-private/secret:1"]
    tenant = "img-ids"
    key = agenthost.tenant(tenant)
    try:
        async with connect(agenthost, key, "http") as client:
            await call(client, "deploy_service", {"name": "ok", "image": hello_image, "port": 8000, "wait": False})
            for ref in refused:
                with pytest.raises(ToolFailed) as err:
                    await call(client, "deploy_service", {"name": "stolen", "image": ref, "wait": False})
                assert err.value.code == "image_not_allowed", (ref, err.value)
                assert "ah-test/*" in err.value.message and "agenthost/python:bookworm" in err.value.message
                with pytest.raises(ToolFailed) as err:
                    await call(client, "update_service", {"service": "ok", "image": ref, "wait": False})
                assert err.value.code == "image_not_allowed", (ref, err.value)
            services = (await call(client, "list_services"))["services"]
            assert [(s["name"], s["image"]) for s in services] == [("ok", hello_image)]
            await call(client, "delete_service", {"service": "ok", "confirm": True})
    finally:
        docker_client.images.remove("ah-private/secret:1")
    assert engine_objects(docker_client, agenthost.tenant_ids[tenant])["containers"] == []


async def test_attack_update_whose_redeploy_raises_rolls_back(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("update-raises")
    async with connect(agenthost, key, "http") as client:
        await call(
            client, "deploy_service", {"name": "app", "image": hello_image, "port": 8000, "env": {"GREETING": "v1"}}
        )
        # The engine refuses to start this at all (ensure_workload raises), unlike a version that starts and crashes.
        with pytest.raises(ToolFailed) as err:
            await call(
                client, "update_service", {"service": "app", "command": ["/no/such/binary"], "env": {"GREETING": "v2"}}
            )
        assert err.value.code == "workload_failed", err.value
        assert "rolled back" in err.value.message and "previous version" in err.value.message, err.value
        assert "/no/such/binary" in err.value.message  # what the engine said about the new version
        after = await call(client, "get_service", {"service": "app"})
        assert after["status"] == "running" and after["command"] is None, after
        assert httpx.get(after["internal_url"], timeout=5).text == "hello v1"  # the previous version, env included
        await call(client, "delete_service", {"service": "app", "confirm": True})
