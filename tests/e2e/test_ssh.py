"""SSH access through a real MCP client and the real OpenSSH client, on Docker: another tenant's key, the
host key kept across restarts (of the service and of the server) and stored encrypted, sessions recorded as
events and audit rows, and bad keys refused. (What both backends share is in test_backend_conformance_ssh.py.)"""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncssh
import docker
import pytest

from .conformance import OpenSsh
from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_ssh_keys_tenants_restarts_and_records(
    agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    alice = asyncssh.generate_private_key("ssh-ed25519", comment="alice@laptop")
    bob = asyncssh.generate_private_key("ecdsa-sha2-nistp256", comment="bob")
    key = agenthost.tenant("ssh-life")
    other = agenthost.tenant("ssh-other")
    async with connect(agenthost, key, "http") as client, connect(agenthost, other, "http") as theirs:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "box",
                "image": hello_image,
                "port": 8000,
                "ssh_public_key": alice.export_public_key().decode(),
            },
        )
        assert svc["status"] == "running", svc
        await call(theirs, "deploy_service", {"name": "box", "image": hello_image, "port": 8000})
        bob_info = await call(theirs, "add_ssh_key", {"service": "box", "public_key": bob.export_public_key().decode()})
        assert bob_info["user"] == "box.ssh-other"
        info = await call(client, "ssh_info", {"service": "box"})
        assert info["user"] == "box.ssh-life" and info["ready"], info
        assert bob_info["host_key_fingerprint"] == info["host_key_fingerprint"]  # one gateway, one host key
        ssh = OpenSsh(tmp_path / "alice", info, alice)
        as_bob = OpenSsh(tmp_path / "bob", info, bob)
        assert await ssh.out("id -u; hostname") and await as_bob.out("echo in", user="box.ssh-other") == "in\n"

        # Another tenant's key, on this tenant's service, is refused as an unknown service is.
        foreign = await as_bob.run("true")
        unknown = await ssh.run("true", user="nothing.ssh-life")
        for done in (foreign, unknown):
            assert done.returncode == 255 and b"Permission denied (publickey)" in done.stderr, done
        assert foreign.stderr.replace(b"box.ssh-life", b"X") == unknown.stderr.replace(b"nothing.ssh-life", b"X")

        # A restarted service: the session lands in its new run; the host key stays.
        await call(client, "restart_service", {"service": "box"})
        assert "python3 /app/app.py" in await ssh.out("ps -eo args")
        assert (await ssh.run("exit 3")).returncode == 3

        # Every session is an event and an audit row: who (the key), what, when, how it ended.
        events = (await call(client, "list_events", {"kind": "service"}))["events"]
        sessions = [e for e in events if e["type"] == "ssh_session"]
        assert {e["exit_code"] for e in sessions} >= {0, 3}, sessions
        assert all(alice.get_fingerprint("sha256") in e["cause"] for e in sessions)
        async with connect(agenthost, agenthost.admin_key, "stdio") as admin:
            audit = (await call(admin, "list_audit", {"tenant": "ssh-life"}))["entries"]
        rows = [a for a in audit if a["action"] == "ssh_session"]
        assert {r["key_id"] for r in rows} == {f"ssh:{alice.get_fingerprint('sha256')}"}, rows
        assert "exit 3" in {r["outcome"] for r in rows}

        await call(theirs, "delete_service", {"service": "box", "confirm": True})

    # The host key survives a restart of the server itself, and is stored encrypted, readable by no one else.
    agenthost.kill_server()
    assert agenthost.url
    path = agenthost.data_dir / "ssh_host_key.json"
    assert "PRIVATE KEY" not in path.read_text() and path.stat().st_mode & 0o077 == 0
    async with connect(agenthost, key, "stdio") as client:
        again = await call(client, "ssh_info", {"service": "box"})
        assert again["host_key_fingerprint"] == info["host_key_fingerprint"] and again["ready"]
        assert await ssh.out("echo back") == "back\n"  # known_hosts from before: the same host key
        await call(client, "delete_service", {"service": "box", "confirm": True})
    done = await ssh.run("true")
    assert done.returncode == 255 and b"Permission denied (publickey)" in done.stderr, done


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
        info = await call(client, "add_ssh_key", {"service": "k", "public_key": strong_rsa})
        assert info["authorized_keys"][0]["type"] == "ssh-rsa"
        with pytest.raises(ToolFailed) as err:
            await call(client, "add_ssh_key", {"service": "k", "public_key": "SHA256:nope", "remove": True})
        assert err.value.code == "not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "add_ssh_key", {"service": "nope", "public_key": ed})
        assert err.value.code == "not_found"
        await call(client, "delete_service", {"service": "k", "confirm": True})


async def test_forwarding_reaches_the_tenants_own_database_by_name(
    agenthost: AgentHost, hello_image: str, tmp_path: Path
) -> None:
    alice = asyncssh.generate_private_key("ssh-ed25519")
    key = agenthost.tenant("ssh-fwd")
    other = agenthost.tenant("ssh-fwd-other")
    async with connect(agenthost, key, "http") as client, connect(agenthost, other, "stdio") as theirs:
        public = alice.export_public_key().decode()
        await call(
            client, "deploy_service", {"name": "app", "image": hello_image, "port": 8000, "ssh_public_key": public}
        )
        assert (await call(client, "create_database", {"name": "cache", "engine": "redis"}))["status"] == "running"
        await call(client, "link_database", {"database": "cache", "service": "app"})
        assert (await call(theirs, "create_database", {"name": "theirs", "engine": "redis"}))["status"] == "running"
        ssh = OpenSsh(tmp_path / "alice", await call(client, "ssh_info", {"service": "app"}), alice)

        async with ssh.forward("cache:6379") as local, await anyio.connect_tcp("127.0.0.1", local) as redis:
            await redis.send(b"PING\r\n")
            assert (await redis.receive()).startswith(b"-NOAUTH"), "not the tenant's redis"
        async with ssh.forward("theirs:6379") as local, await anyio.connect_tcp("127.0.0.1", local) as refused:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                await refused.receive()
        for ref, who in (("cache", client), ("theirs", theirs)):
            await call(who, "delete_database", {"database": ref, "confirm": True})
        await call(client, "delete_service", {"service": "app", "confirm": True})
