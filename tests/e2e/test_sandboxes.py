"""Sandboxes through a real MCP client: the warm pool, exec, TTL reaping, concurrency and network isolation."""

from __future__ import annotations

import socket
import time
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import docker
import httpx
import pytest
from mcp import Client

from .conformance import OpenSsh, pool_ready
from .harness import AgentHost, ToolFailed, call, connect, untrusted_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def containers_of(client: docker.DockerClient, ids: list[str]) -> list[str]:
    names = {f"ah-{i}" for i in ids}
    return [c.name for c in client.containers.list(ignore_removed=True, all=True) if c.name in names]


async def test_sandbox_from_pool_exec_list_delete_and_reap(
    agenthost: AgentHost, docker_client: docker.DockerClient, platform_images: object
) -> None:
    key = agenthost.tenant("sbx-life")
    async with connect(agenthost, key, "http") as client:
        first = await call(client, "create_sandbox", {"name": "first"})  # warms the pool if nothing did yet
        await pool_ready(agenthost)
        sbx = await call(client, "create_sandbox", {"name": "scratch"})
        assert sbx["from_pool"] is True and sbx["status"] == "running" and sbx["network"] == "none"
        assert docker_client.containers.get(f"ah-{sbx['id']}").status == "running"

        r = await call(client, "exec", {"sandbox": "scratch", "command": "python3 -c 'print(6 * 7)'; pwd"})
        assert (r["exit_code"], untrusted_body(r["stdout"])) == (0, "42\n/workspace\n")
        r = await call(client, "exec", {"sandbox": "scratch", "command": "echo kept > notes.txt && cat notes.txt"})
        assert untrusted_body(r["stdout"]) == "kept\n"
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
    # Five tenants, four at a time each: one tenant's calls in flight are capped (tenant_max_inflight), and
    # the warm pool is shared by every tenant, so that is where a container must never be handed out twice.
    keys = [agenthost.tenant(f"sbx-many-{t}") for t in range(5)]
    results: dict[int, tuple[str, bool, str]] = {}
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(agenthost, key, "http")) for key in keys]
        await call(clients[0], "create_sandbox", {"name": "warm-up"})  # the pool warms on demand
        await call(clients[0], "delete_sandbox", {"sandbox": "warm-up", "confirm": True})
        await pool_ready(agenthost, 2)

        async def one(i: int) -> None:
            client = clients[i % len(clients)]
            sbx = await call(client, "create_sandbox", {"name": f"par-{i}"})
            r = await call(client, "exec", {"sandbox": f"par-{i}", "command": f"echo n-{i} > f && cat f && hostname"})
            assert r["exit_code"] == 0, r
            results[i] = (sbx["id"], sbx["from_pool"], untrusted_body(r["stdout"]))
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
        for client in clients:
            assert (await call(client, "list_sandboxes"))["sandboxes"] == []


async def test_network_none_cannot_reach_a_service_on_the_host(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("sbx-net")
    async with connect(agenthost, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        assert svc["status"] == "running"
        port = int(svc["internal_url"].rsplit(":", 1)[1])
        assert httpx.get(svc["internal_url"], timeout=5).text == "hello world"  # reachable from the host itself
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
        out = untrusted_body(r["stdout"])
        assert r["exit_code"] == 0, r
        assert "ifaces ['lo']" in out, out
        assert "reached" not in out and out.count("blocked") == 2, out

        await call(client, "create_sandbox", {"name": "online", "network": "egress"})
        r = await call(client, "exec", {"sandbox": "online", "command": ["python3", "-c", probe.split("\nfor")[0]]})
        assert "eth0" in untrusted_body(r["stdout"]), (
            "an egress sandbox has an interface: the probe can tell them apart"
        )

        for name in ("offline", "online"):
            await call(client, "delete_sandbox", {"sandbox": name, "confirm": True})
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_attack_sandbox_from_id_digest_or_private_image_is_refused(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    """create_sandbox takes the same images as deploy_service: by id, id prefix, digest or an operator's
    private tag it is image_not_allowed, with nothing made; an image the operator allows runs."""
    image = docker_client.images.get(hello_image)
    hex_id = image.id.removeprefix("sha256:")
    image.tag("ah-private/secret", "2")
    key = agenthost.tenant("sbx-ids")
    try:
        async with connect(agenthost, key, "http") as client:
            for ref in (hex_id[:12], hex_id[:2], image.id, f"sha256:{hex_id[:6]}", "ah-private/secret:2"):
                with pytest.raises(ToolFailed) as err:
                    await call(client, "create_sandbox", {"image": ref})
                assert err.value.code == "image_not_allowed", (ref, err.value)
                assert "ah-test/*" in err.value.message, err.value.message
            assert (await call(client, "list_sandboxes"))["sandboxes"] == []
            allowed = await call(client, "create_sandbox", {"image": hello_image, "memory_mb": 128})
            assert allowed["image"] == hello_image and allowed["status"] == "running"
            await call(client, "delete_sandbox", {"sandbox": allowed["id"], "confirm": True})
    finally:
        docker_client.images.remove("ah-private/secret:2")
    filters = {"label": f"agenthost.tenant={agenthost.tenant_ids['sbx-ids']}"}
    assert docker_client.containers.list(ignore_removed=True, all=True, filters=filters) == []


async def test_get_sandbox_and_extend_it_up_to_the_maximum(
    agenthost: AgentHost, platform_images: object, transport: str
) -> None:
    key = agenthost.tenant(f"sbx-extend-{transport}")
    async with connect(agenthost, key, transport) as client:
        made = await call(client, "create_sandbox", {"name": "lease", "ttl_s": 60, "memory_mb": 128})
        got = await call(client, "get_sandbox", {"sandbox": "lease"})
        assert got == made, (got, made)
        assert got["status"] == "running" and got["memory_mb"] == 128 and got["cpus"] > 0, got
        extended = await call(client, "extend_sandbox", {"sandbox": made["id"], "ttl_s": 7200})
        assert datetime.fromisoformat(extended["expires_at"]) > datetime.fromisoformat(made["expires_at"]), extended
        assert (await call(client, "get_sandbox", {"sandbox": "lease"}))["expires_at"] == extended["expires_at"]
        with pytest.raises(ToolFailed) as err:
            await call(client, "extend_sandbox", {"sandbox": "lease", "ttl_s": 86401})
        assert err.value.code == "invalid_input" and "maximum of 86400" in err.value.message, err.value
        assert (await call(client, "get_sandbox", {"sandbox": "lease"}))["expires_at"] == extended["expires_at"]
        await call(client, "delete_sandbox", {"sandbox": "lease", "confirm": True})
        with pytest.raises(ToolFailed) as err:
            await call(client, "get_sandbox", {"sandbox": "lease"})
        assert err.value.code == "not_found", err.value


async def test_attack_another_tenants_sandbox_cannot_be_read_or_kept_alive(
    agenthost: AgentHost, platform_images: object
) -> None:
    owner_key, other_key = agenthost.tenant("sbx-lease-owner"), agenthost.tenant("sbx-lease-other")
    async with connect(agenthost, owner_key, "http") as owner, connect(agenthost, other_key, "stdio") as other:
        made = await call(owner, "create_sandbox", {"name": "private", "ttl_s": 60, "memory_mb": 128})
        for ref in ("private", made["id"]):
            for tool, args in (("get_sandbox", {}), ("extend_sandbox", {"ttl_s": 86400})):
                with pytest.raises(ToolFailed) as err:
                    await call(other, tool, {"sandbox": ref, **args})
                assert err.value.code == "not_found", (tool, ref, err.value)
        assert (await call(owner, "get_sandbox", {"sandbox": "private"}))["expires_at"] == made["expires_at"]
        await call(owner, "delete_sandbox", {"sandbox": "private", "confirm": True})


def waiting_execs(container: docker.models.containers.Container) -> list[tuple[str, str]]:
    """(pid, key) of each exec prepared in the container and still waiting for its command, seen through the
    engine: the prepared wrapper's argv ends with its key."""
    out = container.exec_run(["ps", "-eo", "pid=,args="]).output.decode()
    return [(line.split()[0], line.split()[-1]) for line in out.splitlines() if "read -r AGENTHOST_A" in line]


async def claim_warm(
    client: Client, agenthost: AgentHost, docker_client: docker.DockerClient, name: str
) -> tuple[dict[str, Any], docker.models.containers.Container]:
    """A sandbox served from the warm pool (one other sandbox warms the shape), and its container."""
    await call(client, "create_sandbox", {"name": f"{name}-warmer"})
    await pool_ready(agenthost)
    sbx = await call(client, "create_sandbox", {"name": name})
    assert sbx["from_pool"], sbx
    return sbx, docker_client.containers.get(f"ah-{sbx['id']}")


async def test_a_warm_sandbox_s_first_exec_runs_in_the_exec_prepared_for_it(
    lone_agenthost: AgentHost, docker_client: docker.DockerClient, platform_images: object
) -> None:
    """A pooled container holds an exec started ahead of its first command; the first exec over MCP runs there
    (its marker is that exec's key), the next through the engine. The attack: the tenant's own process ends the
    waiting exec before the first command (as an SSH session could): the exec then runs through the engine and
    answers with the command's own output and status, not the ended exec's."""
    key = lone_agenthost.tenant("sbx-prep")
    async with connect(lone_agenthost, key, "http") as client:
        one, container = await claim_warm(client, lone_agenthost, docker_client, "one")
        ((_, prepared),) = waiting_execs(container)
        marker = "echo \"$AGENTHOST_EXEC_ID\"; python3 -c 'print(6 * 7)'"
        r = await call(client, "exec", {"sandbox": "one", "command": marker})
        assert (r["exit_code"], untrusted_body(r["stdout"])) == (0, f"{prepared}\n42\n"), r
        assert waiting_execs(container) == []
        r = await call(client, "exec", {"sandbox": "one", "command": marker})
        assert r["exit_code"] == 0 and untrusted_body(r["stdout"]).split("\n")[0] != prepared, r

        await pool_ready(lone_agenthost)
        two = await call(client, "create_sandbox", {"name": "two"})
        assert two["from_pool"], two
        container = docker_client.containers.get(f"ah-{two['id']}")
        ((pid, prepared),) = waiting_execs(container)
        assert container.exec_run(["kill", "-9", pid]).exit_code == 0
        r = await call(client, "exec", {"sandbox": "two", "command": 'echo "ran $AGENTHOST_EXEC_ID"; exit 3'})
        assert r["exit_code"] == 3 and untrusted_body(r["stdout"]).startswith("ran "), r
        assert prepared not in r["stdout"], r
        ids = [s["id"] for s in (await call(client, "list_sandboxes"))["sandboxes"]]
        assert len(ids) == 3 and {one["id"], two["id"]} <= set(ids), ids
        for ref in ("one", "two", "one-warmer"):
            await call(client, "delete_sandbox", {"sandbox": ref, "confirm": True})
        assert containers_of(docker_client, ids) == []


# Run in the sandbox over SSH, as code the agent does not trust would: it finds a waiting prepared exec, stops it,
# and keeps the ends of its input and output; a child of its own, outside the session and without its marker,
# then takes the next request from that input and answers it on that output with the request's own nonce.
HIJACKER = b"""
import os, signal
pid = next((int(p) for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
            and b"read -r AGENTHOST_A" in open(f"/proc/{p}/cmdline", "rb").read()), None)
if pid is None:
    print("nothing waits", flush=True)
    raise SystemExit(0)
os.kill(pid, signal.SIGSTOP)
request, answer = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY), os.open(f"/proc/{pid}/fd/1", os.O_WRONLY)
print("stopped", pid, flush=True)
if os.fork():
    os._exit(0)
os.setsid()
null = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
line = b""
while not line.endswith(b"\\n") and (chunk := os.read(request, 1)):
    line += chunk
os.write(answer, b"agenthost-took " + line.split(b" ")[0].strip(b"'") + b"\\nforged\\n")
os.kill(pid, signal.SIGCONT)
"""


async def test_attack_code_run_over_ssh_before_the_first_exec_cannot_answer_for_it(
    lone_agenthost: AgentHost, docker_client: docker.DockerClient, platform_images: object, tmp_path: Path
) -> None:
    """The attack: a sandbox from the pool gets an SSH key, and code run in a session takes the exec prepared for
    the first command (any process of the sandbox's user can read and write a waiting exec's input and output).
    Giving the sandbox a key gives up its prepared exec first, so the first command runs in a process the engine
    starts for it and answers with its own output and status."""
    key = lone_agenthost.tenant("sbx-prep-ssh")
    alice = asyncssh.generate_private_key("ssh-ed25519")
    async with connect(lone_agenthost, key, "http") as client:
        box, container = await claim_warm(client, lone_agenthost, docker_client, "box")
        assert len(waiting_execs(container)) == 1
        info = await call(client, "add_ssh_key", {"sandbox": "box", "public_key": alice.export_public_key().decode()})
        assert waiting_execs(container) == []
        ssh = OpenSsh(tmp_path / "alice", info, alice)
        hijack = await ssh.run("env -u AGENTHOST_EXEC_ID python3 -", stdin=HIJACKER)
        assert (hijack.returncode, hijack.stdout) == (0, b"nothing waits\n"), hijack
        r = await call(client, "exec", {"sandbox": "box", "command": "echo real; exit 5"})
        assert (r["exit_code"], untrusted_body(r["stdout"])) == (5, "real\n"), r
        for ref in ("box", "box-warmer"):
            await call(client, "delete_sandbox", {"sandbox": ref, "confirm": True})
