"""SSH access through a real MCP client and a real SSH client (asyncssh) with keys the test generates."""

from __future__ import annotations

import sqlite3

import anyio
import asyncssh
import docker
import pytest

from .conformance import HTTP_VIA_LOCALHOST, ssh_run
from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SERVICE_CMD = "echo written-by-service > /home/app/from-service.txt && exec python3 /app/app.py"


async def ready_info(client: object, service: str) -> dict:
    with anyio.fail_after(120):
        while not (info := await call(client, "ssh_info", {"service": service}))["ready"]:  # type: ignore[arg-type]
            await anyio.sleep(0.5)
    return info


async def test_ssh_access_lifecycle(agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient) -> None:
    key = agenthost.tenant("ssh-life")
    alice = asyncssh.generate_private_key("ssh-ed25519", comment="alice@laptop")
    bob = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    mallory = asyncssh.generate_private_key("ssh-ed25519")
    async with connect(agenthost, key, "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "box",
                "image": hello_image,
                "port": 8000,
                "command": ["sh", "-c", SERVICE_CMD],
                "volumes": [{"name": "home", "path": "/home/app"}],
                "ssh_public_key": alice.export_public_key().decode(),
            },
        )
        assert svc["status"] == "running", svc
        info = await ready_info(client, "box")
        assert info["host"] == "127.0.0.1" and info["user"] == "app" and info["ready"]
        assert info["command"] == f"ssh -p {info['port']} app@127.0.0.1"
        assert info["known_hosts_line"].startswith(f"[127.0.0.1]:{info['port']} ssh-ed25519 ")
        assert [k["comment"] for k in info["authorized_keys"]] == ["alice@laptop"]
        sidecar = docker_client.containers.get(f"ah-{svc['id']}-ssh")
        assert sidecar.attrs["HostConfig"]["Runtime"] == "runsc"
        assert (
            sidecar.attrs["HostConfig"]["NetworkMode"]
            == f"container:{docker_client.containers.get('ah-' + svc['id']).id}"
        )

        out, fp = await ssh_run(info, alice, "cat /home/app/from-service.txt; id -un; " + HTTP_VIA_LOCALHOST)
        assert fp == info["host_key_fingerprint"]
        assert out.startswith("written-by-service\napp\n") and "hello world" in out

        with pytest.raises(asyncssh.PermissionDenied):
            await ssh_run(info, mallory, "true")
        with pytest.raises(asyncssh.PermissionDenied):
            await ssh_run(info, alice, "true", user="root")

        # The host key survives a restart: same fingerprint, advertised and presented.
        await call(client, "restart_service", {"service": "box"})
        again = await ready_info(client, "box")
        assert again["host_key_fingerprint"] == info["host_key_fingerprint"]
        out, fp = await ssh_run(again, alice, "cat /home/app/from-service.txt")
        assert fp == info["host_key_fingerprint"] and out == "written-by-service\n"

        # A second key; then removing the first closes access for it alone.
        added = await call(client, "add_ssh_key", {"service": "box", "public_key": bob.export_public_key().decode()})
        assert len(added["authorized_keys"]) == 2
        info = await ready_info(client, "box")
        assert (await ssh_run(info, bob, "echo bob-in"))[0] == "bob-in\n"
        alice_fp = next(k["fingerprint"] for k in info["authorized_keys"] if k["comment"] == "alice@laptop")
        assert alice_fp == alice.get_fingerprint("sha256")
        left = await call(client, "add_ssh_key", {"service": "box", "public_key": alice_fp, "remove": True})
        assert [k["fingerprint"] for k in left["authorized_keys"]] == [bob.get_fingerprint("sha256")]
        info = await ready_info(client, "box")
        with pytest.raises(asyncssh.PermissionDenied):
            await ssh_run(info, alice, "true")
        assert (await ssh_run(info, bob, "echo still-in"))[0] == "still-in\n"
        assert info["host_key_fingerprint"] == again["host_key_fingerprint"]

        # Removing the last key closes SSH entirely: no sidecar, no published port.
        bob_pub = bob.export_public_key().decode()
        closed = await call(client, "add_ssh_key", {"service": "box", "public_key": bob_pub, "remove": True})
        assert closed["authorized_keys"] == [] and closed["port"] is None
        with pytest.raises(ToolFailed) as err:
            await call(client, "ssh_info", {"service": "box"})
        assert err.value.code == "invalid_input"
        with pytest.raises(OSError):
            await ssh_run(info, bob, "true")
        assert not docker_client.containers.list(all=True, filters={"name": f"ah-{svc['id']}-ssh"})
        assert (await call(client, "get_service", {"service": "box"}))["status"] == "running"

        # Back on, then deleting the service removes the sidecar too.
        await call(client, "add_ssh_key", {"service": "box", "public_key": alice.export_public_key().decode()})
        info = await ready_info(client, "box")
        assert info["host_key_fingerprint"] == again["host_key_fingerprint"]
        assert (await ssh_run(info, alice, "echo back"))[0] == "back\n"

        # The host key is stored encrypted.
        db = sqlite3.connect(agenthost.data_dir / "agenthost.db")
        (blob,) = db.execute("SELECT private_key FROM ssh_host_keys WHERE service_id = ?", (svc["id"],)).fetchone()
        assert b"PRIVATE KEY" not in blob and b"openssh" not in blob.lower()

        await call(client, "delete_service", {"service": "box", "confirm": True})
        assert not docker_client.containers.list(all=True, filters={"name": f"ah-{svc['id']}"})
        assert db.execute("SELECT COUNT(*) FROM ssh_host_keys WHERE service_id = ?", (svc["id"],)).fetchone() == (0,)
        db.close()
        with pytest.raises(OSError):
            await ssh_run(info, alice, "true")


async def test_bad_public_keys_are_refused(agenthost: AgentHost, hello_image: str) -> None:
    key = agenthost.tenant("ssh-bad")
    weak_rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
    strong_rsa = asyncssh.generate_private_key("ssh-rsa", key_size=3072).export_public_key().decode()
    ed = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    bad = {
        "ssh-ed25519 AAAA!!!notbase64": "base64",
        weak_rsa: "too weak",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP== user@host": "DSA",
        f'command="/bin/sh" {ed}': "options",
        "hello world": "unsupported",
        ed.strip() + "\nssh-ed25519 AAAAC3Nz second": "one key",
        "ssh-rsa " + ed.split()[1]: "holds a ssh-ed25519 key",
    }
    async with connect(agenthost, key, "stdio") as client:
        for public, why in bad.items():
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "k", "image": hello_image, "ssh_public_key": public})
            assert err.value.code == "invalid_input" and why in err.value.message, (public[:40], err.value)
        assert (await call(client, "list_services"))["services"] == []

        await call(client, "deploy_service", {"name": "k", "image": hello_image, "port": 8000})
        with pytest.raises(ToolFailed) as err:
            await call(client, "ssh_info", {"service": "k"})
        assert err.value.code == "invalid_input" and "add_ssh_key" in err.value.message
        with pytest.raises(ToolFailed) as err:
            await call(client, "add_ssh_key", {"service": "k", "public_key": weak_rsa})
        assert err.value.code == "invalid_input"
        info = await call(client, "add_ssh_key", {"service": "k", "public_key": strong_rsa, "wait": False})
        assert info["authorized_keys"][0]["type"] == "ssh-rsa"
        with pytest.raises(ToolFailed) as err:
            await call(client, "add_ssh_key", {"service": "k", "public_key": "SHA256:nope", "remove": True})
        assert err.value.code == "not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "add_ssh_key", {"service": "nope", "public_key": ed})
        assert err.value.code == "not_found"
        await call(client, "delete_service", {"service": "k", "confirm": True})
