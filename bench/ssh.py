"""Time to the first shell prompt over agenthost's SSH gateway against `docker exec -it` on the same container.

One service (the bench hello app, runsc) is deployed through agenthost and given a key; then, alternately,
the OpenSSH client (`ssh -tt <service>.<tenant>@gateway`) and `docker exec -it <container> sh -i` are started
on a terminal of their own, and the time from start until the shell's prompt ('$ ') appears is taken. The
gateway's session is an exec in that same container, with a terminal made inside it (runsc gives engine
execs none) and the login shell's start-up. Usage: .venv/bin/python bench/ssh.py [ROUNDS]
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import asyncssh
import docker
from serving import http_client

from common import Platform, build_hello, free_port, report, tool


def first_prompt(argv: list[str], timeout: float = 60) -> float:
    """Seconds from starting ``argv`` on a terminal of its own until '$ ' appears on it; then it exits."""
    master, slave = pty.openpty()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        while b"$ " not in seen:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"no prompt from {argv[0]}: {seen[-200:]!r}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 4096)
        took = time.monotonic() - started
        os.write(master, b"exit\n")
        proc.wait(30)
        return took
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    image = build_hello(client)
    platform = Platform(AGENTHOST_SANDBOX_POOL_SIZE="0", AGENTHOST_SSH_PORT=str(free_port()))
    platform.env["AGENTHOST_SSH_BIND"] = "127.0.0.1"
    key = asyncssh.generate_private_key("ssh-ed25519")
    ours: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        key_file, known = Path(tmp) / "id", Path(tmp) / "known_hosts"
        key_file.write_bytes(key.export_private_key())
        key_file.chmod(0o600)
        try:
            async with http_client(platform) as mcp:
                public = key.export_public_key().decode()
                svc = await tool(
                    mcp, "deploy_service", {"name": "target", "image": image, "port": 8000, "ssh_public_key": public}
                )
                assert svc["status"] == "running", svc
                info = await tool(mcp, "ssh_info", {"service": "target"})
                known.write_text(info["known_hosts_line"] + "\n")
                ssh = ["ssh", "-F", "/dev/null", "-tt", "-i", str(key_file), "-o", f"UserKnownHostsFile={known}"]
                ssh += ["-o", "IdentitiesOnly=yes", "-p", str(info["port"]), f"{info['user']}@{info['host']}"]
                docker_exec = ["docker", "exec", "-it", f"ah-{svc['id']}", "sh", "-i"]
                for _ in range(2):  # warm-up, untimed
                    first_prompt(ssh)
                    first_prompt(docker_exec)
                for _ in range(rounds):
                    ours.append(await anyio.to_thread.run_sync(first_prompt, ssh))
                    raw.append(await anyio.to_thread.run_sync(first_prompt, docker_exec))
                await tool(mcp, "delete_service", {"service": "target", "confirm": True})
        finally:
            platform.cleanup(client)
    report("time to the first prompt: ssh via the gateway vs docker exec -it (runsc service)", ours, raw, "docker -it")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
