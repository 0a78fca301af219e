"""Volumes through a real MCP client: what a tenant holds, who mounts it, and deleting what no service uses."""

from __future__ import annotations

import docker
import pytest

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def engine_volumes(client: docker.DockerClient, tenant_id: str) -> list[str]:
    return sorted(v.name for v in client.volumes.list(filters={"label": f"agenthost.tenant={tenant_id}"}))


async def test_volumes_are_listed_with_their_users_and_deleted_once_unused(
    agenthost: AgentHost, docker_client: docker.DockerClient, hello_image: str, transport: str
) -> None:
    tenant = f"vol-life-{transport}"
    key = agenthost.tenant(tenant)
    tenant_id = agenthost.tenant_ids[tenant]
    mount = {"name": "data", "path": "/data"}
    async with connect(agenthost, key, transport) as client:
        for name in ("app", "worker"):
            await call(
                client, "deploy_service", {"name": name, "image": hello_image, "volumes": [mount], "wait": False}
            )
        listing = await call(client, "list_volumes", {})
        assert listing["volumes"] == [{"name": "data", "status": "in_use", "used_by": ["app", "worker"]}], listing
        assert listing["max_volumes"] >= 1
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_volume", {"volume": "data"})
        assert err.value.code == "confirmation_required", err.value
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_volume", {"volume": "data", "confirm": True})
        assert err.value.code == "conflict" and "app, worker" in err.value.message, err.value
        assert engine_volumes(docker_client, tenant_id) == [f"ah-{tenant_id}-data"]

        await call(client, "delete_service", {"service": "app", "confirm": True, "keep_volumes": True})
        await call(client, "delete_service", {"service": "worker", "confirm": True, "keep_volumes": True})
        listing = await call(client, "list_volumes", {})
        assert listing["volumes"] == [{"name": "data", "status": "kept", "used_by": []}], listing

        deleted = await call(client, "delete_volume", {"volume": "data", "confirm": True})
        assert deleted["kind"] == "volume" and deleted["name"] == "data", deleted
        assert (await call(client, "list_volumes", {}))["volumes"] == []
        assert engine_volumes(docker_client, tenant_id) == []
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_volume", {"volume": "data", "confirm": True})
        assert err.value.code == "not_found", err.value


async def test_attack_another_tenants_volume_is_not_found(
    agenthost: AgentHost, docker_client: docker.DockerClient, hello_image: str
) -> None:
    owner_key, thief_key = agenthost.tenant("vol-owner"), agenthost.tenant("vol-thief")
    owner_id = agenthost.tenant_ids["vol-owner"]
    async with connect(agenthost, owner_key, "http") as owner:
        mount = {"name": "secrets", "path": "/data"}
        await call(owner, "deploy_service", {"name": "vault", "image": hello_image, "volumes": [mount], "wait": False})
        await call(owner, "delete_service", {"service": "vault", "confirm": True, "keep_volumes": True})
        async with connect(agenthost, thief_key, "stdio") as thief:
            assert (await call(thief, "list_volumes", {}))["volumes"] == []
            for name in ("secrets", f"ah-{owner_id}-secrets", f"../{owner_id}-secrets"):
                with pytest.raises(ToolFailed) as err:
                    await call(thief, "delete_volume", {"volume": name, "confirm": True})
                assert err.value.code == "not_found", (name, err.value)
        assert engine_volumes(docker_client, owner_id) == [f"ah-{owner_id}-secrets"]
        assert [v["name"] for v in (await call(owner, "list_volumes", {}))["volumes"]] == ["secrets"]
        await call(owner, "delete_volume", {"volume": "secrets", "confirm": True})
    assert engine_volumes(docker_client, owner_id) == []
