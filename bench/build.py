"""build_from_git (wait=true, over MCP stdio) against a raw `docker build` of the same context.

Each round commits a change to a local repository, so neither side builds from cache past the COPY;
then agenthost builds that commit (fetch, recipe, build with limits on the egress bridge, push to the
local registry) and the docker CLI builds the same commit's files with the same builder, limits and
network. A third column adds `docker push` to the raw build, the fair match for what agenthost does.
Rounds alternate, so both see the same machine. Usage: .venv/bin/python bench/build.py [ROUNDS]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import docker

from common import Platform, report, tool

REGISTRY = os.environ.get("AGENTHOST_REGISTRY", "127.0.0.1:5000")
DOCKERFILE = """FROM agenthost/python:bookworm
COPY --chown=10001:10001 . /app
RUN python3 -m compileall -q /app && cat /app/version.txt
EXPOSE 8000
CMD ["python3", "/app/app.py"]
"""


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, i: int) -> None:
    (repo / "version.txt").write_text(f"round {i}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"round {i}")


def _raw_build(repo: Path, tag: str) -> tuple[float, float]:
    """Seconds for `docker build` of the commit's files, and for the `docker push` after it."""
    with tempfile.TemporaryDirectory() as ctx:
        # The same context agenthost builds: the commit's files, without .git.
        subprocess.run(f"git -C {repo} archive HEAD | tar -x -C {ctx}", shell=True, check=True)
        started = time.monotonic()
        subprocess.run(
            [
                "docker",
                "build",
                "-q",
                "--network",
                "ah-eg-open",
                "--memory",
                "2g",
                "--memory-swap",
                "2g",
                "--cpu-period",
                "100000",
                "--cpu-quota",
                "100000",
                "-t",
                tag,
                ctx,
            ],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=True,
            capture_output=True,
        )
        built = time.monotonic()
        subprocess.run(["docker", "push", "-q", tag], check=True, capture_output=True)
        return built - started, time.monotonic() - built


async def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    platform = Platform(AGENTHOST_ALLOW_LOCAL_GIT="true", AGENTHOST_REGISTRY=REGISTRY)
    repo = Path(tempfile.mkdtemp(prefix="ah-bench-repo-"))
    repo.chmod(0o755)  # git runs as an unprivileged user, as for a tenant's build: it must read the repository
    (repo / "app.py").write_text("print('hello')\n")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, -1)
    ours: list[float] = []
    raw: list[float] = []
    raw_push: list[float] = []
    raw_tags: list[str] = []
    try:
        async with platform.client() as mcp:
            # One warm-up of each, untimed: the first build creates the egress network and warms caches.
            await tool(mcp, "build_from_git", {"git_url": str(repo), "name": "bench", "wait_timeout_s": 600})
            raw_tags.append(f"{REGISTRY}/ah-bench-raw/build:warm")
            _raw_build(repo, raw_tags[-1])
            for i in range(rounds):
                _commit(repo, i)
                started = time.monotonic()
                build = await tool(
                    mcp, "build_from_git", {"git_url": str(repo), "name": "bench", "wait_timeout_s": 600}
                )
                ours.append(time.monotonic() - started)
                assert build["status"] == "succeeded", build
                raw_tags.append(f"{REGISTRY}/ah-bench-raw/build:{i}")
                build_s, push_s = _raw_build(repo, raw_tags[-1])
                raw.append(build_s)
                raw_push.append(build_s + push_s)
    finally:
        for tag in raw_tags:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        for image in client.images.list(filters={"label": f"agenthost.tenant={platform.tenant_id}"}):
            client.images.remove(image.id, force=True)
        platform.cleanup(client)
    report("build from a new commit", ours, raw, "docker build")
    report("build from a new commit, then push", ours, raw_push, "build+push")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 7)
