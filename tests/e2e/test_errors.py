"""Bad input and failure: a stable code, a message and a hint, and nothing left behind."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from .engine import NOTHING, engine_objects
from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


BAD_DEPLOYS: list[tuple[dict[str, Any], str, str]] = [
    ({"name": "Bad_Name"}, "invalid_input", "name"),
    ({"name": "-x"}, "invalid_input", "name"),
    ({"name": "a" * 41}, "invalid_input", "name"),
    ({"image": "ah-test/no-such-image:never"}, "image_not_found", "no-such-image"),
    ({"image": "ah-private/secret:1"}, "image_not_allowed", "ah-private/secret:1"),
    ({"port": 0}, "invalid_input", "port"),
    ({"port": 70000}, "invalid_input", "port"),
    ({"memory_mb": 8000}, "quota_exceeded", "memory_mb"),
    ({"cpus": 9}, "quota_exceeded", "cpus"),
    ({"runtime": "sysbox"}, "runtime_unavailable", "sysbox"),
    ({"runtime": "kata"}, "invalid_input", "runtime"),
    ({"env": {"1BAD": "x"}}, "invalid_input", "1BAD"),
    ({"env": {"AGENTHOST_X": "x"}}, "invalid_input", "AGENTHOST_"),
    ({"command": []}, "invalid_input", "command"),
    ({"volumes": [{"name": "data", "path": "/a"}, {"name": "other", "path": "/a"}]}, "invalid_input", "path"),
    ({"volumes": [{"name": "data", "path": "relative"}]}, "invalid_input", "path"),
    ({"egress": "sometimes"}, "invalid_input", "egress"),
    ({"user": "nosuchuser"}, "invalid_input", "nosuchuser"),
    ({"command": ["/nonexistent/binary"]}, "invalid_input", "/nonexistent/binary"),
]


async def test_bad_deploys_get_codes_and_leave_nothing(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient, transport: str
) -> None:
    tenant = f"bad-{transport}"
    key = agenthost.tenant(tenant)
    async with connect(agenthost, key, transport) as client:
        for override, code, mention in BAD_DEPLOYS:
            args = {"name": "svc", "image": hello_image, "port": 8000, **override}
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", args)
            assert err.value.code == code, (override, err.value)
            assert mention in err.value.message, (override, err.value.message)
            assert "(hint: " in err.value.message, err.value.message
        assert (await call(client, "list_services"))["services"] == []
    assert engine_objects(docker_client, agenthost.tenant_ids[tenant]) == NOTHING


async def test_duplicate_name_and_unknown_service(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("dup")
    async with connect(agenthost, key, "stdio") as client:
        await call(client, "deploy_service", {"name": "one", "image": hello_image, "port": 8000, "wait": False})
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "one", "image": hello_image, "port": 8000})
        assert err.value.code == "conflict"
        assert len((await call(client, "list_services"))["services"]) == 1
        for tool in ("get_service", "stop_service", "start_service", "restart_service", "service_logs"):
            with pytest.raises(ToolFailed) as err:
                await call(client, tool, {"service": "ghost"})
            assert err.value.code == "not_found"
            assert "list_services" in str(err.value)
        await call(client, "delete_service", {"service": "one", "confirm": True})


async def test_service_quota_counts_existing_services(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("quota")
    async with connect(agenthost, key, "http") as client:
        first = {"name": "big", "image": hello_image, "memory_mb": 4096, "wait": False}
        await call(client, "deploy_service", first)
        await call(client, "deploy_service", {**first, "name": "big2"})
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {**first, "name": "big3", "memory_mb": 64})
        assert err.value.code == "quota_exceeded"
        usage = (await call(client, "whoami"))["usage"]
        assert usage == {
            "services": 2,
            "memory_mb": 8192,
            "cpus": 1.0,
            "databases": 0,
            "sandboxes": 0,
            "volumes": 0,
            "backups": 0,
            "backup_bytes": 0,
            "build_log_bytes": 0,
        }
        for name in ("big", "big2"):
            await call(client, "delete_service", {"service": name, "confirm": True})


async def test_docker_unreachable(agenthost: AgentHost, tmp_path_factory: pytest.TempPathFactory) -> None:
    broken = AgentHost(data_dir=tmp_path_factory.mktemp("no-docker"))
    broken.env = {"AGENTHOST_DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    broken.init()
    async with connect(broken, broken.admin_key, "stdio") as client:
        status = await call(client, "platform_status")
        assert status["reachable"] is False
        assert "unreachable" in status["error"]
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "x", "image": "agenthost/python:bookworm"})
        assert err.value.code == "backend_unavailable"
        assert (await call(client, "list_services"))["services"] == []
