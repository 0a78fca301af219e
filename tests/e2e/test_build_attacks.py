"""A hostile tenant's build tries to take the host down, or to get more than a build may have.

Through the MCP client as a tenant: a RUN step floods processes, fills the disk, probes its
capabilities and raw sockets; a repository has more files than the cap; git is watched from the
server it fetches from; an ADD makes the engine itself download from the host's network. Images stay
local here (no registry), so this module also runs against a private Docker daemon whose default
runtime is runsc (``DOCKER_HOST=unix:///run/….sock``).
"""

from __future__ import annotations

import functools
import glob
import http.server
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from orchestrator.settings import Settings

from .harness import AgentHost, build_leftovers, call, connect, git, make_repo, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PIDS_LIMIT = 512
DISK_MB = 100
MAX_FILES = 300
UNPRIVILEGED_UID = 65534
# Docker's default capability set (CapEff of a root RUN step under runc): NET_RAW (bit 13) among them.
DOCKER_DEFAULT_CAPS = 0xA80425FB
NET_RAW = 1 << 13

PROBE = """
import socket
for line in open("/proc/self/status"):
    if line.startswith("CapEff:"):
        print("probe CapEff", line.split()[1])
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    print("probe raw socket: allowed")
except OSError as exc:
    print("probe raw socket: refused", exc.errno)
"""


@pytest.fixture(scope="module")
def attack_host(
    docker_client: docker.DockerClient, platform_images: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentHost]:
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-build-attacks")),
        env={
            "AGENTHOST_ALLOW_LOCAL_GIT": "true",
            "AGENTHOST_REGISTRY": "",
            "AGENTHOST_BUILD_MEMORY_MB": "512",
            "AGENTHOST_BUILD_PIDS_LIMIT": str(PIDS_LIMIT),
            "AGENTHOST_BUILD_DISK_MB": str(DISK_MB),
            "AGENTHOST_BUILD_MAX_SOURCE_FILES": str(MAX_FILES),
        },
    )
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()
    for tid in host.tenant_ids.values():
        for image in docker_client.images.list(filters={"label": f"agenthost.tenant={tid}"}):
            docker_client.images.remove(image.id, force=True)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server of the test's own on 127.0.0.1: its base URL, and the paths it was asked for."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"fetched\n")

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()


def _build_cgroups(server_pid: int) -> list[str]:
    """The per-build pids cgroups the server process made (cgroup v1 and v2 layouts)."""
    return glob.glob(f"/sys/fs/cgroup/pids/agenthost-build.{server_pid}.*") + glob.glob(
        f"/sys/fs/cgroup/agenthost-build.{server_pid}.*"
    )


async def test_attack_fork_flood_in_a_run_step_is_capped(
    attack_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    flood = make_repo(
        repo_dir / "flood",
        {
            "Dockerfile": (
                f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\n"
                'RUN i=0; while [ $i -lt 2000 ]; do sleep 60 & i=$((i+1)); done; echo "spawned $i"\n'
            )
        },
    )
    fine = make_repo(repo_dir / "fine", {"Dockerfile": "FROM agenthost/base:bookworm\nRUN echo still-building\n"})
    key = attack_host.tenant("atk-flood")
    async with connect(attack_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(flood), "wait_timeout_s": 300})
        assert build["status"] == "failed", build
        assert "spawned 2000" not in build["log_tail"], build["log_tail"]
        assert "returned a non-zero code" in build["error"], build
        assert f"at most {PIDS_LIMIT} processes" in build["hint"], build
        # The host is fine: the engine and the platform still build.
        after = await call(client, "build_from_git", {"git_url": str(fine), "wait_timeout_s": 300})
        assert after["status"] == "succeeded", after
    assert wait_for(lambda: build_leftovers(docker_client, marker) == [], 60, what="flood leftovers to go")
    assert _build_cgroups(attack_host.server_pid) == []


async def test_attack_disk_flood_in_run_steps_fails_the_build(
    attack_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    # Two steps under the limit each, over it together: the committed layers count, and the build
    # stops before its last step ends.
    layered = make_repo(
        repo_dir / "layered",
        {
            "Dockerfile": (
                f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nUSER root\n"
                "RUN head -c 73400320 /dev/zero > /fill1\nRUN head -c 73400320 /dev/zero > /fill2\n"
                f"RUN sleep 30 && echo layered-done-{marker}\n"
            )
        },
    )
    # One step that keeps writing: stopped while it runs, long before it would finish.
    slow = make_repo(
        repo_dir / "slow",
        {
            "Dockerfile": (
                f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nUSER root\n"
                "RUN for i in $(seq 60); do head -c 10485760 /dev/zero > /fill$i; sleep 0.25; done; "
                f"echo wrote-all-{marker}\n"
            )
        },
    )
    key = attack_host.tenant("atk-disk")
    async with connect(attack_host, key, "http") as client:
        for repo, never in ((layered, f"layered-done-{marker}"), (slow, f"wrote-all-{marker}")):
            build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
            assert build["status"] == "failed", build
            assert f"the build wrote more than {DISK_MB} MiB" in build["error"], build
            assert build["hint"], build
            logs = await call(client, "build_logs", {"build_id": build["id"]})
            assert never not in logs["output"].replace(f"echo {never}", ""), logs["output"]
    assert wait_for(lambda: build_leftovers(docker_client, marker) == [], 60, what="disk flood layers to go")
    assert docker_client.images.list(filters={"label": f"agenthost.tenant={attack_host.tenant_ids['atk-disk']}"}) == []


async def test_attack_run_step_capabilities_and_raw_sockets(
    attack_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    """Under runsc a RUN step has no raw sockets; under runc it has Docker's defaults, and both the build
    log and platform_status say so."""
    runtime = docker_client.info().get("DefaultRuntime")
    repo = make_repo(
        repo_dir / "caps",
        {
            "probe.py": PROBE,
            "Dockerfile": "FROM agenthost/python:bookworm\nUSER root\nCOPY probe.py /probe.py\nRUN python3 /probe.py\n",
        },
    )
    key = attack_host.tenant("atk-caps")
    async with connect(attack_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        logs = (await call(client, "build_logs", {"build_id": build["id"]}))["output"]
        caps = int(logs.split("probe CapEff ", 1)[1].split()[0], 16)
        status = await call(client, "platform_status", {})
    build_notes = [n for n in status["notes"] if "RUN steps run under" in n]
    if runtime == "runsc":
        assert "[agenthost] RUN steps run under gVisor (runsc)" in logs, logs
        assert "probe raw socket: refused" in logs, logs
        assert not caps & NET_RAW, hex(caps)
        assert build_notes == [], status["notes"]
    else:
        assert runtime == "runc", runtime
        assert "[agenthost] warning: RUN steps run under runc" in logs, logs
        assert "NET_RAW" in logs, logs
        assert caps == DOCKER_DEFAULT_CAPS, hex(caps)
        assert "probe raw socket: allowed" in logs, logs
        assert len(build_notes) == 1 and "runc" in build_notes[0], status["notes"]


async def test_attack_repository_with_too_many_files_is_refused(attack_host: AgentHost, repo_dir: Path) -> None:
    files = {f"junk/{i:04d}.txt": "x" for i in range(MAX_FILES + 200)}
    repo = make_repo(repo_dir / "many", {"index.html": "hi", **files})
    key = attack_host.tenant("atk-files")
    async with connect(attack_host, key, "stdio") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build["status"] == "failed", build
        assert f"more than the limit of {MAX_FILES} files" in build["error"], build
        assert build["hint"], build
        assert build["image"] is None


def _peer_uid(client_port: int, server_port: int) -> int | None:
    """The uid owning the client end of a loopback TCP connection, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == client_port and int(remote.split(":")[1], 16) == server_port:
            return int(fields[7])
    return None


async def test_attack_git_runs_as_an_unprivileged_user(
    attack_host: AgentHost, repo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The server a repository is fetched from sees who connects: never root."""
    root = tmp_path_factory.mktemp("git-uid-http")
    repo = make_repo(repo_dir / "watched", {"index.html": "watched"})
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(root / "watched.git")], check=True)
    git(root / "watched.git", "update-server-info")
    uids: list[int | None] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            uids.append(_peer_uid(self.client_address[1], self.server.server_address[1]))  # type: ignore[arg-type]
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/watched.git"
        async with connect(attack_host, attack_host.tenant("atk-uid"), "http") as client:
            build = await call(client, "build_from_git", {"git_url": url, "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
    finally:
        server.shutdown()
    assert uids and set(uids) == {UNPRIVILEGED_UID}, uids


def _remote_adds(url: str) -> dict[str, str]:
    base = "FROM agenthost/base:bookworm\n"
    return {
        "registry": base + "ADD http://127.0.0.1:5000/v2/_catalog /c\n",
        "plain": base + f"ADD {url}/plain /p\n",
        "arg": base + f"ARG U={url}/arg\nADD $U /a\n",
        "meta-arg": f"ARG U={url}/meta-arg\n" + base + "ARG U\nADD ${U} /m\n",
        "env": base + f'ENV U={url}/env\nADD ["$U", "/e"]\n',
        "json": base + f'ADD ["{url}/json", "/j"]\n',
        "chown": base + f"ADD --chown=65534:65534 {url}/chown /o\n",
        "quoted": base + f'ADD "{url}/quoted" /q\n',
        "continued": base + f"ADD \\\n  {url}/continued \\\n  /k\n",
        "onbuild": base + f"ONBUILD ADD {url}/onbuild /ob\n",
    }


async def test_attack_add_from_a_url_is_refused_before_the_engine_sees_it(
    attack_host: AgentHost,
    repo_dir: Path,
    docker_client: docker.DockerClient,
    listener: tuple[str, list[str]],
) -> None:
    """The engine downloads an ADD's URL itself, from the host's network: the local registry, a listener on
    loopback, the LAN. Every spelling of it fails the build before a step runs, and nothing is fetched."""
    url, fetched = listener
    key = attack_host.tenant("atk-add")
    async with connect(attack_host, key, "http") as client:
        for case, dockerfile in _remote_adds(url).items():
            repo = make_repo(repo_dir / f"add-{case}", {"Dockerfile": dockerfile})
            build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
            assert build["status"] == "failed", (case, build)
            assert "ADD" in build["error"] and "is refused" in build["error"], (case, build["error"])
            assert "download in a RUN step" in build["hint"], (case, build["hint"])
            logs = (await call(client, "build_logs", {"build_id": build["id"]}))["output"]
            assert "is refused" in logs and "Step 1/" not in logs, (case, logs)
            assert fetched == [], (case, fetched)
    assert docker_client.images.list(filters={"label": f"agenthost.tenant={attack_host.tenant_ids['atk-add']}"}) == []
