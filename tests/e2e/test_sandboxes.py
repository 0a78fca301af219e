"""Sandboxes through a real MCP client: the warm pool, exec, TTL reaping, concurrency and network isolation."""

from __future__ import annotations

import socket
import time

import anyio
import docker
import httpx
import pytest

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def body(text: str) -> str:
    return text.split("\n", 1)[1].rsplit("\n", 1)[0] if text else ""


def containers_of(client: docker.DockerClient, ids: list[str]) -> list[str]:
    names = {f"ah-{i}" for i in ids}
    return [c.name for c in client.containers.list(all=True) if c.name in names]


async def pool_ready(agenthost: AgentHost, client: docker.DockerClient, want: int = 1) -> None:
    """Wait (bounded) until the platform's warm pool holds ``want`` running containers (it warms once a
    sandbox of the default shape was asked for)."""
    filters = {"label": [f"agenthost.instance={agenthost.instance}", "agenthost.tenant=pool"], "status": "running"}
    with anyio.fail_after(180):
        while len(client.containers.list(filters=filters)) < want:
            await anyio.sleep(0.5)


async def test_sandbox_from_pool_exec_list_delete_and_reap(
    agenthost: AgentHost, docker_client: docker.DockerClient, platform_images: object
) -> None:
    key = agenthost.tenant("sbx-life")
    async with connect(agenthost, key, "http") as client:
        first = await call(client, "create_sandbox", {"name": "first"})  # warms the pool if nothing did yet
        await pool_ready(agenthost, docker_client)
        sbx = await call(client, "create_sandbox", {"name": "scratch"})
        assert sbx["from_pool"] is True and sbx["status"] == "running" and sbx["network"] == "none"
        assert docker_client.containers.get(f"ah-{sbx['id']}").status == "running"

        r = await call(client, "exec", {"sandbox": "scratch", "command": "python3 -c 'print(6 * 7)'; pwd"})
        assert (r["exit_code"], body(r["stdout"])) == (0, "42\n/workspace\n")
        r = await call(client, "exec", {"sandbox": "scratch", "command": "echo kept > notes.txt && cat notes.txt"})
        assert body(r["stdout"]) == "kept\n"
        r = await call(client, "exec", {"sandbox": "scratch", "command": ["touch", "/etc/x"]})
        assert r["exit_code"] != 0, "the image itself is read-only"

        listed = await call(client, "list_sandboxes")
        assert [s["name"] for s in listed["sandboxes"]] == ["first", "scratch"]
        assert (await call(client, "whoami"))["usage"]["sandboxes"] == 2

        # A shape the pool does not hold is started cold, with its own limits.
        cold = await call(client, "create_sandbox", {"memory_mb": 256, "cpus": 0.5})
        assert cold["from_pool"] is False and cold["memory_mb"] == 256
        attrs = docker_client.containers.get(f"ah-{cold['id']}").attrs["HostConfig"]
        assert attrs["Memory"] == 256 * 1024 * 1024 and attrs["Runtime"] == "runsc" and attrs["ReadonlyRootfs"]

        with pytest.raises(ToolFailed) as err:
            await call(client, "create_sandbox", {"name": "scratch"})
        assert err.value.code == "conflict"
        with pytest.raises(ToolFailed) as err:
            await call(client, "create_sandbox", {"image": "ah-test/no-such-image:1"})
        assert err.value.code == "image_not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_sandbox", {"sandbox": "scratch"})
        assert err.value.code == "confirmation_required"

        for ref in ("scratch", "first", cold["id"]):
            await call(client, "delete_sandbox", {"sandbox": ref, "confirm": True})
        assert containers_of(docker_client, [sbx["id"], first["id"], cold["id"]]) == []
        assert (await call(client, "list_sandboxes"))["sandboxes"] == []
        with pytest.raises(ToolFailed) as err:
            await call(client, "exec", {"sandbox": "scratch", "command": ["true"]})
        assert err.value.code == "not_found"

        # Expired sandboxes are reaped by the platform, container and record.
        short = await call(client, "create_sandbox", {"name": "brief", "ttl_s": 10})
        with anyio.fail_after(90):
            while (await call(client, "list_sandboxes"))["sandboxes"]:
                await anyio.sleep(1)
        assert containers_of(docker_client, [short["id"]]) == []


async def test_twenty_concurrent_sandboxes(agenthost: AgentHost, docker_client: docker.DockerClient) -> None:
    key = agenthost.tenant("sbx-many")
    results: dict[int, tuple[str, bool, str]] = {}
    async with connect(agenthost, key, "http") as client:
        await call(client, "create_sandbox", {"name": "warm-up"})  # the pool warms on demand
        await call(client, "delete_sandbox", {"sandbox": "warm-up", "confirm": True})
        await pool_ready(agenthost, docker_client, 2)

        async def one(i: int) -> None:
            sbx = await call(client, "create_sandbox", {"name": f"par-{i}"})
            r = await call(client, "exec", {"sandbox": f"par-{i}", "command": f"echo n-{i} > f && cat f && hostname"})
            assert r["exit_code"] == 0, r
            results[i] = (sbx["id"], sbx["from_pool"], body(r["stdout"]))
            await call(client, "delete_sandbox", {"sandbox": f"par-{i}", "confirm": True})

        began = time.monotonic()
        with anyio.fail_after(600):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
        elapsed = time.monotonic() - began
        assert len(results) == 20, elapsed
        ids = [r[0] for r in results.values()]
        assert len(set(ids)) == 20, "a pooled container was handed out twice"
        assert sum(r[1] for r in results.values()) >= 2, "the warm pool served none"
        hostnames = [r[2].split("\n")[1] for r in results.values()]
        assert len(set(hostnames)) == 20, "two sandboxes shared a container"
        assert all(results[i][2].startswith(f"n-{i}\n") for i in results)
        assert containers_of(docker_client, ids) == []
        assert (await call(client, "list_sandboxes"))["sandboxes"] == []


async def test_network_none_cannot_reach_a_service_on_the_host(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("sbx-net")
    async with connect(agenthost, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        assert svc["status"] == "running"
        port = int(svc["url"].rsplit(":", 1)[1])
        assert httpx.get(svc["url"], timeout=5).text == "hello world"  # reachable from the host itself
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

        probe = (
            "import os, socket\n"
            "print('ifaces', sorted(os.listdir('/sys/class/net')))\n"
            f"for host, port in [('127.0.0.1', {port}), ('web', 8000)]:\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=3).close()\n"
            "        print('reached', host)\n"
            "    except OSError as exc:\n"
            "        print('blocked', host, type(exc).__name__)\n"
        )
        await call(client, "create_sandbox", {"name": "offline", "network": "none"})
        r = await call(client, "exec", {"sandbox": "offline", "command": ["python3", "-c", probe], "timeout_s": 60})
        out = body(r["stdout"])
        assert r["exit_code"] == 0, r
        assert "ifaces ['lo']" in out, out
        assert "reached" not in out and out.count("blocked") == 2, out

        await call(client, "create_sandbox", {"name": "online", "network": "egress"})
        r = await call(client, "exec", {"sandbox": "online", "command": ["python3", "-c", probe.split("\nfor")[0]]})
        assert "eth0" in body(r["stdout"]), "an egress sandbox has an interface: the probe can tell them apart"

        for name in ("offline", "online"):
            await call(client, "delete_sandbox", {"sandbox": name, "confirm": True})
        await call(client, "delete_service", {"service": "web", "confirm": True})
