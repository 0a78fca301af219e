"""Builds from git through a real MCP client, on real Docker and the local registry: build, deploy, GET.

The repositories are local (paths, file:// and a dumb-http server on 127.0.0.1), so this platform
runs with the operator setting allow_local_git, in a data dir of its own.
"""

from __future__ import annotations

import functools
import http.server
import json
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from orchestrator.settings import Settings

from .harness import AgentHost, ToolFailed, call, connect, free_port, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

REGISTRY = "127.0.0.1:5000"

SERVER_PY = """
import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("BODY", "{body}").encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), H).serve_forever()
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


def _images_of(client: docker.DockerClient, tenant_id: str) -> list[str]:
    return [i.id for i in client.images.list(filters={"label": f"agenthost.tenant={tenant_id}"})]


def _marked(client: docker.DockerClient, marker: str) -> list[str]:
    """Containers and images (intermediate ones too) whose env carries ``marker``: what a build left behind."""
    found = [c.name for c in client.containers.list(all=True) if marker in json.dumps(c.attrs["Config"].get("Env"))]
    for image in client.images.list(all=True):
        try:
            env = client.api.inspect_image(image.id)["Config"].get("Env")
        except docker.errors.NotFound:
            continue
        if marker in json.dumps(env):
            found.append(image.id)
    return found


@pytest.fixture(scope="module")
def builds_host(
    docker_client: docker.DockerClient, platform_images: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentHost]:
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-builds")),
        env={
            "AGENTHOST_ALLOW_LOCAL_GIT": "true",
            "AGENTHOST_REGISTRY": REGISTRY,
            "AGENTHOST_QUOTAS": json.dumps({"max_concurrent_builds": 1}),
            "AGENTHOST_BUILD_MEMORY_MB": "384",
        },
    )
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()
    for tid in host.tenant_ids.values():
        for image in _images_of(docker_client, tid):
            docker_client.images.remove(image, force=True)


@pytest.fixture(scope="module")
def dumb_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A directory served over plain http on 127.0.0.1: bare repos in it are dumb-http git remotes."""
    root = tmp_path_factory.mktemp("git-http")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _registry_tags(tenant_id: str, name: str) -> list[str]:
    resp = httpx.get(f"http://{REGISTRY}/v2/{tenant_id}/{name}/tags/list", timeout=5)
    return list(resp.json().get("tags") or []) if resp.status_code == 200 else []


def _get(url: str) -> str:
    return httpx.get(url, timeout=5).text


async def _deploy_and_get(client: object, build: dict[str, object], service: str) -> str:
    svc = await call(client, "deploy_service", {"name": service, "build_id": build["id"]})  # type: ignore[arg-type]
    assert svc["status"] == "running", svc
    assert svc["build_id"] == build["id"]
    assert svc["image"] == build["image"]
    body = _get(svc["url"])
    await call(client, "delete_service", {"service": service, "confirm": True})  # type: ignore[arg-type]
    return body


async def test_dockerfile_app_builds_deploys_and_answers(
    builds_host: AgentHost, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(
        tmp_path / "dockerapp",
        {
            "app.py": SERVER_PY.replace("{body}", "built from a Dockerfile"),
            "Dockerfile": (
                'FROM agenthost/python:bookworm\nCOPY app.py /app/app.py\nEXPOSE 8000\nCMD ["python3", "/app/app.py"]\n'
            ),
        },
    )
    key = builds_host.tenant("bld-docker")
    tid = builds_host.tenant_ids["bld-docker"]
    progress: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with connect(builds_host, key, "http") as client:
        build = await call(
            client,
            "build_from_git",
            {"git_url": str(repo), "name": "web", "wait_timeout_s": 300},
            progress_callback=on_progress,
        )
        assert build["status"] == "succeeded", build
        assert build["recipe"] == "dockerfile"
        assert build["commit"] == git(repo, "rev-parse", "HEAD")
        assert build["port"] == 8000
        assert build["image"] == f"{REGISTRY}/{tid}/web:{build['id']}"
        assert any("Step" in m for m in progress), progress
        assert build["id"] in _registry_tags(tid, "web")

        got = await call(client, "get_build", {"build_id": build["id"]})
        assert got["status"] == "succeeded" and got["log_tail"] is None
        listed = await call(client, "list_builds", {})
        assert [b["id"] for b in listed["builds"]] == [build["id"]]
        logs = await call(client, "build_logs", {"build_id": build["id"]})
        assert logs["output"].startswith("<<<UNTRUSTED WORKLOAD OUTPUT")
        assert ": COPY app.py /app/app.py" in logs["output"]
        assert "[agenthost] succeeded" in logs["output"]
        again = await call(client, "build_logs", {"build_id": build["id"], "offset": logs["next_offset"]})
        assert again["next_offset"] == logs["next_offset"] and "succeeded" not in again["output"]

        assert await _deploy_and_get(client, build, "web") == "built from a Dockerfile"

        for args in ({"image": "x:1", "build_id": build["id"]}, {}):
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "both", **args})
            assert err.value.code == "invalid_input"
            assert "exactly one of image and build_id" in err.value.message
    other = builds_host.tenant("bld-other")
    async with connect(builds_host, other, "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "get_build", {"build_id": build["id"]})
        assert err.value.code == "not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "steal", "build_id": build["id"]})
        assert err.value.code == "not_found"


async def test_python_app_without_dockerfile(builds_host: AgentHost, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "pyapp",
        {"app.py": SERVER_PY.replace("{body}", "python recipe"), "requirements.txt": "# no dependencies\n"},
    )
    key = builds_host.tenant("bld-python")
    async with connect(builds_host, key, "stdio") as client:
        build = await call(client, "build_from_git", {"git_url": f"file://{repo}", "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        assert build["name"] == "pyapp"
        assert build["recipe"] == "python"
        assert "start: python3 app.py" in build["recipe_detail"]
        assert build["port"] == 8080
        assert await _deploy_and_get(client, build, "py") == "python recipe"


async def test_static_site_over_http(builds_host: AgentHost, tmp_path: Path, dumb_http: tuple[Path, str]) -> None:
    repo = make_repo(tmp_path / "site", {"index.html": "<h1>static site works</h1>\n", "about.html": "about"})
    root, base_url = dumb_http
    bare = root / "site.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    git(bare, "update-server-info")
    key = builds_host.tenant("bld-static")
    async with connect(builds_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": f"{base_url}/site.git", "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        assert build["recipe"] == "static"
        assert build["commit"] == git(repo, "rev-parse", "HEAD")
        assert await _deploy_and_get(client, build, "site") == "<h1>static site works</h1>\n"


async def test_node_app_without_dockerfile(builds_host: AgentHost, tmp_path: Path) -> None:
    server = (
        "require('http').createServer((q, r) => r.end('node recipe')).listen(process.env.PORT || 3000, '0.0.0.0');\n"
    )
    package = {"name": "nodeapp", "version": "1.0.0", "scripts": {"start": "node server.js"}, "dependencies": {}}
    repo = make_repo(tmp_path / "nodeapp", {"server.js": server, "package.json": json.dumps(package)})
    key = builds_host.tenant("bld-node")
    async with connect(builds_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        assert build["recipe"] == "node"
        assert await _deploy_and_get(client, build, "node") == "node recipe"


async def test_branch_tag_and_commit_refs(builds_host: AgentHost, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "refs", {"index.html": "v1"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "-a", "v1", "-m", "v1")
    (repo / "index.html").write_text("v2")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "checkout", "-q", "-b", "other")
    key = builds_host.tenant("bld-refs")
    async with connect(builds_host, key, "http") as client:
        builds = []
        for ref, expected in (("v1", first), (first[:10], first), ("main", git(repo, "rev-parse", "main"))):
            build = await call(client, "build_from_git", {"git_url": str(repo), "ref": ref, "wait_timeout_s": 300})
            assert build["status"] == "succeeded", build
            assert build["commit"] == expected, (ref, build)
            builds.append(build)
        svc = await call(client, "deploy_service", {"name": "site", "build_id": builds[0]["id"]})
        assert _get(svc["url"]) == "v1"
        svc = await call(client, "update_service", {"service": "site", "build_id": builds[2]["id"]})
        assert svc["build_id"] == builds[2]["id"] and svc["image"] == builds[2]["image"]
        assert _get(svc["url"]) == "v2"
        await call(client, "delete_service", {"service": "site", "confirm": True})


async def test_broken_dockerfile_fails_with_log_tail(
    builds_host: AgentHost, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    repo = make_repo(
        tmp_path / "broken",
        {"Dockerfile": f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nRUN echo broken-{marker} && exit 3\n"},
    )
    key = builds_host.tenant("bld-broken")
    async with connect(builds_host, key, "stdio") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build["status"] == "failed"
        assert "returned a non-zero code: 3" in build["error"]
        assert build["hint"]
        assert f"broken-{marker}" in build["log_tail"]
        assert build["log_tail"].startswith("<<<UNTRUSTED WORKLOAD OUTPUT")
        assert build["image"] is None
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "nope", "build_id": build["id"]})
        assert err.value.code == "invalid_input"
    assert _marked(docker_client, marker) == []
    assert _images_of(docker_client, builds_host.tenant_ids["bld-broken"]) == []


async def test_cancel_mid_build_leaves_nothing_behind(
    builds_host: AgentHost, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    repo = make_repo(
        tmp_path / "slow",
        {
            "Dockerfile": (
                f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nCOPY Dockerfile /d\n"
                f"RUN echo started-{marker} && sleep 300\n"
            )
        },
    )
    key = builds_host.tenant("bld-cancel")
    async with connect(builds_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait": False})
        assert build["status"] in ("queued", "running")
        second = await call(client, "build_from_git", {"git_url": str(repo), "wait": False})
        assert second["status"] == "queued" and second["queue_position"] == 0
        followed = await call(client, "build_logs", {"build_id": build["id"], "follow": False})
        offset = 0
        for _ in range(60):  # each follow call is bounded; the step starts well within a few
            if f"started-{marker}" in followed["output"]:
                break
            followed = await call(client, "build_logs", {"build_id": build["id"], "offset": offset, "follow": True})
            offset = followed["next_offset"]
        assert f"started-{marker}" in followed["output"]
        assert _marked(docker_client, marker), "the build should have a step container and a layer now"

        queued = await call(client, "cancel_build", {"build_id": second["id"]})
        assert queued["status"] == "cancelled"
        # The build runs in the HTTP server's process; cancel it from another one (a stdio session).
        async with connect(builds_host, key, "stdio") as other:
            cancelled = await call(other, "cancel_build", {"build_id": build["id"]})
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["error"] == "cancelled by cancel_build"
        again = await call(client, "cancel_build", {"build_id": build["id"]})
        assert again["status"] == "cancelled"
    assert wait_for(lambda: _marked(docker_client, marker) == [], 60, what="build leftovers to go")
    assert _images_of(docker_client, builds_host.tenant_ids["bld-cancel"]) == []
    assert not (Path("/tmp/agenthost-builds") / build["id"]).exists()


async def test_bad_input_ends_failed_with_reason(
    builds_host: AgentHost, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    good = make_repo(tmp_path / "good", {"index.html": "hi"})
    empty = make_repo(tmp_path / "norecipe", {"README.md": "nothing to build"})
    unparsable = make_repo(tmp_path / "unparsable", {"Dockerfile": "FROM agenthost/base:bookworm\nBOGUS thing\n"})
    marker = uuid.uuid4().hex
    slow = make_repo(
        tmp_path / "slow",
        {"Dockerfile": f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nRUN sleep 120\n"},
    )
    key = builds_host.tenant("bld-bad")
    cases = [
        ({"git_url": f"http://127.0.0.1:{free_port()}/nothing.git"}, "repository unreachable"),
        ({"git_url": str(tmp_path / "missing")}, "repository unreachable"),
        ({"git_url": str(good), "ref": "no-such-branch"}, "unknown ref 'no-such-branch'"),
        ({"git_url": str(good), "dockerfile": "docker/Dockerfile"}, "no Dockerfile at 'docker/Dockerfile'"),
        ({"git_url": str(empty)}, "no recipe detected"),
        ({"git_url": str(unparsable)}, "unknown instruction: BOGUS"),
        ({"git_url": str(slow), "timeout_s": 8}, "time limit of 8 s"),
    ]
    async with connect(builds_host, key, "http") as client:
        for args, reason in cases:
            build = await call(client, "build_from_git", {**args, "wait_timeout_s": 300})
            assert build["status"] == "failed", (args, build)
            assert reason in build["error"], (args, build["error"])
            assert build["hint"], build
            assert build["log_tail"].startswith("<<<UNTRUSTED"), build
            assert "[agenthost] failed" in build["log_tail"], build
        refused = [
            ("ssh://git@example.com/x.git", "scheme"),
            ("git@example.com:owner/x.git", "ssh"),
            ("https://user:secret@example.com/x.git", "credentials"),
            ("https://10.0.0.1/x.git", "non-public"),
            ("https://169.254.169.254/x.git", "metadata"),
            ("ext::sh -c touch% /tmp/pwned", "transport"),
        ]
        for url, words in refused:
            with pytest.raises(ToolFailed) as err:
                await call(client, "build_from_git", {"git_url": url})
            assert err.value.code == "invalid_input", url
            assert words in err.value.message, (url, err.value.message)
        with pytest.raises(ToolFailed) as err:
            await call(client, "build_from_git", {"git_url": str(good), "dockerfile": "../etc/passwd"})
        assert err.value.code == "invalid_input"
    assert wait_for(lambda: _marked(docker_client, marker) == [], 60, what="timed-out build leftovers to go")
    assert _images_of(docker_client, builds_host.tenant_ids["bld-bad"]) == []


async def test_other_tenants_images_are_refused(builds_host: AgentHost, tmp_path: Path) -> None:
    victim = builds_host.tenant("bld-victim")
    vid = builds_host.tenant_ids["bld-victim"]
    repo = make_repo(tmp_path / "victim", {"index.html": "secret"})
    async with connect(builds_host, victim, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "name": "v", "wait_timeout_s": 300})
        assert build["status"] == "succeeded"
    thief = make_repo(
        tmp_path / "thief",
        {"Dockerfile": f"ARG BASE=localhost:5000/{vid}/v:{build['id']}\nFROM ${{BASE}}\nRUN cat /srv/www/index.html\n"},
    )
    async with connect(builds_host, builds_host.tenant("bld-thief"), "http") as client:
        stolen = await call(client, "build_from_git", {"git_url": str(thief), "wait_timeout_s": 300})
        assert stolen["status"] == "failed"
        assert "not yours" in stolen["error"]


async def test_restart_fails_an_interrupted_build_and_keeps_logs(
    builds_host: AgentHost, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    repo = make_repo(
        tmp_path / "crash",
        {"Dockerfile": f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nRUN echo crash-{marker} && sleep 300\n"},
    )
    key = builds_host.tenant("bld-restart")
    async with connect(builds_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait": False})
        for _ in range(60):
            logs = await call(client, "build_logs", {"build_id": build["id"], "follow": True})
            if f"crash-{marker}" in logs["output"]:
                break
        assert f"crash-{marker}" in logs["output"]
    assert builds_host._server is not None
    builds_host._server.kill()  # a crash: no chance to clean up
    builds_host._server.wait(10)
    builds_host._server, builds_host._url = None, None
    async with connect(builds_host, key, "http") as client:
        got = await call(client, "get_build", {"build_id": build["id"]})
        assert got["status"] == "failed"
        assert "interrupted" in got["error"]
        assert f"crash-{marker}" in got["log_tail"]
        logs = await call(client, "build_logs", {"build_id": build["id"]})
        assert f"crash-{marker}" in logs["output"]
    assert wait_for(lambda: _marked(docker_client, marker) == [], 60, what="interrupted build leftovers to go")


PROBE = """
import socket, sys
gateway = None
for line in open("/proc/net/route").read().splitlines()[1:]:
    fields = line.split()
    if fields[1] == "00000000":
        gateway = socket.inet_ntoa(bytes.fromhex(fields[2])[::-1])
try:
    socket.create_connection((gateway, int(sys.argv[1])), timeout=3).close()
    print("probe: reached the host at", gateway)
except OSError as exc:
    print("probe: host unreachable", type(exc).__name__)
"""


async def test_build_isolation(builds_host: AgentHost, tmp_path: Path, docker_client: docker.DockerClient) -> None:
    """RUN steps cannot reach the host (control plane, registry); the context is the repository only;
    the memory limit holds."""
    listener = socket.create_server(("0.0.0.0", 0))
    port = listener.getsockname()[1]
    listener.settimeout(0.1)
    # Control: from Docker's default bridge the probe does reach the host, so a pass below means isolation.
    control = docker_client.containers.run(
        "agenthost/python:bookworm", ["python3", "-c", PROBE, str(port)], network="bridge", remove=True
    )
    assert b"probe: reached the host" in control
    repo = make_repo(
        tmp_path / "isolated",
        {
            "probe.py": PROBE,
            "Dockerfile": (
                f"FROM agenthost/python:bookworm\nCOPY . /ctx\nRUN ls -A /ctx && python3 /ctx/probe.py {port}\n"
            ),
        },
    )
    hog = make_repo(
        tmp_path / "hog",
        {"Dockerfile": "FROM agenthost/python:bookworm\nRUN python3 -c 'b = bytearray(700 << 20); print(len(b))'\n"},
    )
    key = builds_host.tenant("bld-isolated")
    try:
        async with connect(builds_host, key, "http") as client:
            build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
            assert build["status"] == "succeeded", build
            logs = (await call(client, "build_logs", {"build_id": build["id"]}))["output"]
            assert "probe: host unreachable" in logs, logs
            listing = logs[logs.index("RUN ls -A /ctx") :].splitlines()[2:4]
            assert listing == ["Dockerfile", "probe.py"], logs
            hogged = await call(client, "build_from_git", {"git_url": str(hog), "wait_timeout_s": 300})
            assert hogged["status"] == "failed", hogged
            assert "returned a non-zero code: 137" in hogged["error"], hogged
    finally:
        listener.close()
