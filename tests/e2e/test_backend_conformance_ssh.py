"""SSH through the platform's gateway with the real OpenSSH client, the same on Docker and on the Nomad cluster: a
session lands inside the service's own container (its image's files, its env, its processes, its port),
with a PTY when asked, exit statuses, stdin; refusals say nothing; a revoked key's open session ends."""

from __future__ import annotations

import re
from hashlib import sha256
from pathlib import Path

import anyio
import asyncssh
import docker
import pytest

from orchestrator.backends.base import Backend

from .conformance import OpenSsh, answers, container_of, sh, tenant
from .harness import AgentHost, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

# GET / of the service on its own port, from inside its container (python is in the image; curl is not).
GET_OWN_PORT = "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000').read().decode())\""


async def test_ssh_session_lands_inside_the_service(
    host: AgentHost,
    product_backend: Backend,
    platform_hello_image: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    key = tenant(host, "conf-ssh")
    tenant_name = f"conf-ssh-{host.platform}"
    alice = asyncssh.generate_private_key("ssh-ed25519", comment="alice@laptop")
    mallory = asyncssh.generate_private_key("ssh-ed25519")
    async with connect(host, key, "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "box",
                "image": platform_hello_image,
                "port": 8000,
                "volumes": [{"name": "home", "path": "/home/app"}],
            },
        )
        assert svc["status"] == "running", svc
        await call(client, "set_env", {"service": "box", "vars": {"GREETING": "from-set-env"}})
        container = container_of(host, docker_client, svc["id"]).id

        # Adding a key never touches the workload.
        info = await call(client, "add_ssh_key", {"service": "box", "public_key": alice.export_public_key().decode()})
        assert container_of(host, docker_client, svc["id"]).id == container
        assert info["ready"] and info["user"] == f"box.{tenant_name}" and info["host"] == "127.0.0.1"
        assert info["command"] == f"ssh -p {host.ssh_port} box.{tenant_name}@127.0.0.1"
        assert info["known_hosts_line"].startswith(f"[127.0.0.1]:{host.ssh_port} ssh-ed25519 ")
        assert [k["comment"] for k in info["authorized_keys"]] == ["alice@laptop"]
        ssh = OpenSsh(tmp_path / "alice", info, alice)

        # The image's files, the env set with set_env, the service's own process and port.
        out = await ssh.out("head -n 3 /app/app.py; printenv GREETING; ps -eo args; " + GET_OWN_PORT)
        assert "import os, http.server, sys" in out and "from-set-env\n" in out, out
        assert "python3 /app/app.py" in out and "hello from-set-env" in out, out
        done = await ssh.run("exit 7")
        assert done.returncode == 7, done
        done = await ssh.run("cat; echo to-stderr >&2", stdin=b"piped-in")
        assert (done.returncode, done.stdout, done.stderr) == (0, b"piped-in", b"to-stderr\n"), done
        # A PTY when asked for one; none otherwise.
        assert re.fullmatch(r"/dev/pts/\d+\r?\n", await ssh.out("tty", tty=True))
        assert (await ssh.run("tty")).returncode == 1
        # The terminal's size, and a change of it, reach the shell's terminal.
        async with asyncssh.connect(
            info["host"], port=info["port"], username=info["user"], client_keys=[alice], known_hosts=None
        ) as conn:
            proc = await conn.create_process("stty size; read x; stty size", term_type="xterm", term_size=(80, 24))
            with anyio.fail_after(60):
                assert (await proc.stdout.readline()).strip() == "24 80"
                proc.change_terminal_size(132, 43)  # applied in order: before the newline reaches the terminal
                proc.stdin.write("\n")
                assert (await proc.stdout.readline()).strip() == ""  # the terminal echoes the newline
                assert (await proc.stdout.readline()).strip() == "43 132"

        # ssh -L reaches the service's own port; any other port is refused.
        async with ssh.forward("localhost:8000") as local:
            assert await answers(f"http://127.0.0.1:{local}/", timeout=30) == "hello from-set-env"
        async with ssh.forward("localhost:22") as local, await anyio.connect_tcp("127.0.0.1", local) as refused:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                await refused.receive()

        # sftp puts a file into a volume (exec reads it back) and gets it back; the image's root stays read-only.
        payload = bytes(range(256)) * 1000
        (tmp_path / "up.bin").write_bytes(payload)
        up, down = tmp_path / "up.bin", tmp_path / "down.bin"
        done = await ssh.sftp(f"put {up} /home/app/up.bin\nget /home/app/up.bin {down}\nls -l /home/app\n")
        assert done.returncode == 0, done
        assert (tmp_path / "down.bin").read_bytes() == payload and b"up.bin" in done.stdout
        assert (await sh(client, "sha256sum /home/app/up.bin", service="box"))[1].split()[0] == sha256(
            payload
        ).hexdigest()
        done = await ssh.sftp(f"put {tmp_path / 'up.bin'} /app/up.bin\n")
        assert done.returncode != 0 and b"ermission denied" in done.stderr + done.stdout, done

        # Wrong key, unknown service, unknown tenant, a bare user name: one and the same refusal.
        refusals = [
            await OpenSsh(tmp_path / "mallory", info, mallory).run("true"),
            await ssh.run("true", user=f"nope.{tenant_name}"),
            await ssh.run("true", user="box.no-such-tenant"),
            await ssh.run("true", user="root"),
        ]
        for done in refusals:
            assert done.returncode == 255 and b"Permission denied (publickey)" in done.stderr, done
        assert len({done.stderr.replace(done.args[-2].encode(), b"") for done in refusals}) == 1

        # Revoking the key ends its open session within seconds, kills what it ran, and refuses the next login.
        async with await anyio.open_process(ssh.argv("echo started; sleep 600")) as session:
            assert session.stdout is not None
            with anyio.fail_after(60):
                assert (await session.stdout.receive()).startswith(b"started")
            await call(
                client,
                "add_ssh_key",
                {"service": "box", "public_key": info["authorized_keys"][0]["fingerprint"], "remove": True},
            )
            with anyio.fail_after(20):
                await session.wait()
            assert session.returncode != 0
        with anyio.fail_after(30):
            while "sleep 600" in (await sh(client, "ps -eo args", service="box"))[1]:
                await anyio.sleep(0.5)
        done = await ssh.run("true")
        assert done.returncode == 255 and b"Permission denied (publickey)" in done.stderr, done
        assert container_of(host, docker_client, svc["id"]).id == container
        await call(client, "delete_service", {"service": "box", "confirm": True})


async def test_ssh_session_lands_inside_a_sandbox(host: AgentHost, tmp_path: Path) -> None:
    key = tenant(host, "conf-ssh-sbx")
    alice = asyncssh.generate_private_key("ssh-ed25519")
    async with connect(host, key, "http") as client:
        sbx = await call(client, "create_sandbox", {"name": "scratch"})
        assert sbx["status"] == "running", sbx
        info = await call(
            client, "add_ssh_key", {"sandbox": "scratch", "public_key": alice.export_public_key().decode()}
        )
        assert info["target"] == "sandbox scratch" and info["user"] == f"scratch.conf-ssh-sbx-{host.platform}"
        ssh = OpenSsh(tmp_path / "alice", info, alice)
        assert await ssh.out("echo from-ssh > /workspace/f; cat /workspace/f") == "from-ssh\n"
        assert (await sh(client, "cat /workspace/f", sandbox="scratch"))[1] == "from-ssh\n"
        assert re.fullmatch(r"/dev/pts/\d+\r?\n", await ssh.out("tty", tty=True))
        await call(client, "delete_sandbox", {"sandbox": "scratch", "confirm": True})
        done = await ssh.run("true")
        assert done.returncode == 255 and b"Permission denied (publickey)" in done.stderr, done
