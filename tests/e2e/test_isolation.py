"""What the engine really runs: gVisor, read-only root, no capabilities, limits — asked of Docker directly."""

from __future__ import annotations

import docker
import httpx
import pytest

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_container_runs_with_isolation_defaults(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("iso")
    async with connect(agenthost, key, "stdio") as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "iso", "image": hello_image, "port": 8000, "memory_mb": 192, "cpus": 0.25},
        )
        assert svc["status"] == "running"
        attrs = docker_client.containers.get(f"ah-{svc['id']}").attrs
        host = attrs["HostConfig"]
        assert host["Runtime"] == "runsc"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert not host.get("CapAdd")
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["Memory"] == 192 * 1024 * 1024
        assert host["NanoCpus"] == 250_000_000
        assert host["PidsLimit"] and host["PidsLimit"] > 0
        assert set(host["Tmpfs"]) == {"/tmp", "/run", "/var/tmp"}
        assert not host.get("Privileged")
        assert attrs["Config"]["User"] not in ("", "0", "root")
        bindings = [b for binds in host["PortBindings"].values() for b in binds]
        assert bindings and all(b["HostIp"] == "127.0.0.1" and b["HostPort"] in ("", "0") for b in bindings)
        published = attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]
        assert published["HostIp"] == "127.0.0.1"
        assert svc["internal_url"] == f"http://127.0.0.1:{published['HostPort']}"

        # Inside: the root fs refuses writes, /tmp accepts them, and the kernel is gVisor's.
        container = docker_client.containers.get(f"ah-{svc['id']}")
        assert container.exec_run(["sh", "-c", "echo x > /etc/x"]).exit_code != 0
        assert container.exec_run(["sh", "-c", "echo x > /tmp/x"]).exit_code == 0
        dmesg = container.exec_run(["sh", "-c", "cat /proc/version"]).output.decode()
        assert httpx.get(svc["internal_url"], timeout=5).status_code == 200
        assert "4.4.0" in dmesg  # gVisor reports its own synthetic kernel version

        await call(client, "delete_service", {"service": "iso", "confirm": True})


async def test_runtime_the_node_lacks_is_refused(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("iso-rt")
    async with connect(agenthost, key, "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "dind", "image": hello_image, "runtime": "sysbox"})
        assert err.value.code == "runtime_unavailable"
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "plain", "image": hello_image, "runtime": "runc"})
        assert err.value.code == "runtime_unavailable"
        assert (await call(client, "list_services"))["services"] == []
        status = await call(client, "platform_status")
        assert "runsc" in status["runtimes"]
        assert any("sysbox" in note for note in status["notes"])
