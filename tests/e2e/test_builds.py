"""Builds from git through a real MCP client, on real Docker and the local registry: build, deploy, GET.

The repositories are local (paths, file:// and a dumb-http server on 127.0.0.1), so this platform
runs with the operator setting allow_local_git, in a data dir of its own.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker
import docker.errors
import httpx
import pytest

from orchestrator.settings import Settings

from .conformance import REGISTRY, SERVER_PY
from .engine import engine_images
from .harness import (
    AgentHost,
    ToolFailed,
    build_leftovers,
    call,
    connect,
    free_port,
    git,
    make_repo,
    until,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def builds_host(
    docker_client: docker.DockerClient, platform_images: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentHost]:
    # Outside pytest's tmp_path, which the unprivileged git could not pass through.
    build_dir = Path(tempfile.mkdtemp(prefix="ah-builds-"))
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-builds")),
        env={
            "AGENTHOST_ALLOW_LOCAL_GIT": "true",
            "AGENTHOST_REGISTRY": REGISTRY,
            "AGENTHOST_QUOTAS": json.dumps({"max_concurrent_builds": 1}),
            "AGENTHOST_BUILD_MEMORY_MB": "384",
            "AGENTHOST_BUILD_DIR": str(build_dir),
        },
    )
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()
    shutil.rmtree(build_dir, ignore_errors=True)
    for tid in host.tenant_ids.values():
        for image in engine_images(docker_client, tid):
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


async def _deploy_and_get(client: object, build: dict[str, object], service: str) -> str:
    svc = await call(client, "deploy_service", {"name": service, "build_id": build["id"]})  # type: ignore[arg-type]
    assert svc["status"] == "running", svc
    assert svc["build_id"] == build["id"]
    assert svc["image"] == build["image"]
    body = httpx.get(svc["internal_url"], timeout=5).text
    await call(client, "delete_service", {"service": service, "confirm": True})  # type: ignore[arg-type]
    return body


async def test_dockerfile_app_builds_deploys_and_answers(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(
        repo_dir / "dockerapp",
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


async def test_python_app_without_dockerfile(builds_host: AgentHost, repo_dir: Path) -> None:
    repo = make_repo(
        repo_dir / "pyapp",
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


async def test_static_site_over_http(builds_host: AgentHost, repo_dir: Path, dumb_http: tuple[Path, str]) -> None:
    repo = make_repo(repo_dir / "site", {"index.html": "<h1>static site works</h1>\n", "about.html": "about"})
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


async def test_node_app_without_dockerfile(builds_host: AgentHost, repo_dir: Path) -> None:
    server = (
        "require('http').createServer((q, r) => r.end('node recipe')).listen(process.env.PORT || 3000, '0.0.0.0');\n"
    )
    package = {"name": "nodeapp", "version": "1.0.0", "scripts": {"start": "node server.js"}, "dependencies": {}}
    repo = make_repo(repo_dir / "nodeapp", {"server.js": server, "package.json": json.dumps(package)})
    key = builds_host.tenant("bld-node")
    async with connect(builds_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        assert build["recipe"] == "node"
        assert await _deploy_and_get(client, build, "node") == "node recipe"


async def test_branch_tag_and_commit_refs(builds_host: AgentHost, repo_dir: Path) -> None:
    repo = make_repo(repo_dir / "refs", {"index.html": "v1"})
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
        assert httpx.get(svc["internal_url"], timeout=5).text == "v1"
        svc = await call(client, "update_service", {"service": "site", "build_id": builds[2]["id"]})
        assert svc["build_id"] == builds[2]["id"] and svc["image"] == builds[2]["image"]
        assert httpx.get(svc["internal_url"], timeout=5).text == "v2"
        await call(client, "delete_service", {"service": "site", "confirm": True})


async def test_broken_dockerfile_fails_with_log_tail(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    repo = make_repo(
        repo_dir / "broken",
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
    assert build_leftovers(docker_client, marker) == []
    assert engine_images(docker_client, builds_host.tenant_ids["bld-broken"]) == []


async def test_cancel_mid_build_leaves_nothing_behind(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    repo = make_repo(
        repo_dir / "slow",
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
        started = anyio.Event()
        followed: list[dict[str, Any]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if f"started-{marker}" in (message or ""):
                started.set()

        async def follow() -> None:
            """Follow the build from its first line until it ends (each call is bounded: call again)."""
            offset = 0
            while not followed or followed[-1]["status"] in ("queued", "running"):
                args = {"build_id": build["id"], "offset": offset, "follow": True}
                followed.append(await call(client, "build_logs", args, progress_callback=on_progress))
                offset = followed[-1]["next_offset"]

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            with anyio.fail_after(120):
                await started.wait()
            assert build_leftovers(docker_client, marker), "the build should have a step container and a layer now"
            build_dir = builds_host.settings.build_dir
            assert build_dir is not None
            workdir = build_dir / build["id"]
            assert workdir.is_dir(), "the build should have its working directory now"

            queued = await call(client, "cancel_build", {"build_id": second["id"]})
            assert queued["status"] == "cancelled"
            # The build runs in the HTTP server's process; cancel it from another one (a stdio session).
            async with connect(builds_host, key, "stdio") as other:
                cancelled = await call(other, "cancel_build", {"build_id": build["id"]})
        # The follow ended with the build, and held the step's output both as progress and in its result.
        assert followed[-1]["status"] == "cancelled", followed
        assert f"started-{marker}" in "".join(f["output"] for f in followed)
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["error"] == "cancelled by cancel_build"
        again = await call(client, "cancel_build", {"build_id": build["id"]})
        assert again["status"] == "cancelled"
    assert wait_for(lambda: build_leftovers(docker_client, marker) == [], 60, what="build leftovers to go")
    assert engine_images(docker_client, builds_host.tenant_ids["bld-cancel"]) == []
    assert not workdir.exists()


async def test_bad_input_ends_failed_with_reason(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    good = make_repo(repo_dir / "good", {"index.html": "hi"})
    empty = make_repo(repo_dir / "norecipe", {"README.md": "nothing to build"})
    unparsable = make_repo(repo_dir / "unparsable", {"Dockerfile": "FROM agenthost/base:bookworm\nBOGUS thing\n"})
    marker = uuid.uuid4().hex
    slow = make_repo(
        repo_dir / "slow",
        {"Dockerfile": f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nRUN sleep 120\n"},
    )
    key = builds_host.tenant("bld-bad")
    cases = [
        ({"git_url": f"http://127.0.0.1:{free_port()}/nothing.git"}, "repository unreachable"),
        ({"git_url": str(repo_dir / "missing")}, "repository unreachable"),
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
    assert wait_for(lambda: build_leftovers(docker_client, marker) == [], 60, what="timed-out build leftovers to go")
    assert engine_images(docker_client, builds_host.tenant_ids["bld-bad"]) == []


async def _built(host: AgentHost, tenant: str, repo: Path, name: str) -> dict[str, object]:
    async with connect(host, host.tenant(tenant), "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "name": name, "wait_timeout_s": 300})
    assert build["status"] == "succeeded", build
    return build


async def test_attack_another_tenants_build_private_images_and_ids_are_refused(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    """Tenant B names tenant A's build (by reference, through a loopback alias of the registry, by id or
    digest) or an operator's private image: deploy_service, update_service and create_sandbox refuse each
    with image_not_allowed, before anything is made. A still runs its own build, by build_id and reference."""
    repo = make_repo(repo_dir / "victim", {"index.html": "victim secret"})
    build = await _built(builds_host, "img-victim", repo, "v")
    vid = builds_host.tenant_ids["img-victim"]
    image = str(build["image"])
    hex_id = docker_client.images.get(image).id.removeprefix("sha256:")
    docker_client.images.get(image).tag("ah-private/secret", "1")
    refused = [
        image,
        image.replace("127.0.0.1:", "127.1:"),
        image.replace("127.0.0.1:", "localhost:"),
        f"{REGISTRY}/{vid}/v",
        hex_id[:12],
        hex_id[:3],
        hex_id,
        f"sha256:{hex_id}",
        f"sha256:{hex_id[:12]}",
        f"{REGISTRY}/{vid}/v@{docker_client.images.get(image).attrs['RepoDigests'][0].split('@')[1]}",
        "ah-private/secret:1",
    ]
    thief = builds_host.tenant("img-thief")
    try:
        async with connect(builds_host, thief, "http") as client:
            for ref in refused:
                with pytest.raises(ToolFailed) as err:
                    await call(client, "deploy_service", {"name": "stolen", "image": ref, "wait": False})
                assert err.value.code == "image_not_allowed", (ref, err.value)
                assert "your own builds" in err.value.message, err.value.message  # the hint says what is allowed
                with pytest.raises(ToolFailed) as err:
                    await call(client, "create_sandbox", {"image": ref})
                assert err.value.code == "image_not_allowed", (ref, err.value)
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "stolen", "build_id": build["id"]})
            assert err.value.code == "not_found"
            assert (await call(client, "list_services"))["services"] == []
            assert (await call(client, "list_sandboxes"))["sandboxes"] == []
    finally:
        docker_client.images.remove("ah-private/secret:1")
    assert (
        docker_client.containers.list(
            ignore_removed=True, all=True, filters={"label": f"agenthost.tenant={builds_host.tenant_ids['img-thief']}"}
        )
        == []
    )
    async with connect(builds_host, builds_host.tenant("img-victim"), "stdio") as client:
        assert await _deploy_and_get(client, build, "by-id") == "victim secret"
        svc = await call(client, "deploy_service", {"name": "by-ref", "image": image, "port": build["port"]})
        assert svc["status"] == "running" and svc["image"] == image
        assert httpx.get(svc["internal_url"], timeout=5).text == "victim secret"
        await call(client, "delete_service", {"service": "by-ref", "confirm": True})


async def test_attack_dockerfile_names_an_image_it_may_not_use(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    """FROM and COPY --from in a tenant's Dockerfile pass the same policy, whatever the spelling; a refused
    build fails before the engine runs a step, saying image_not_allowed and what is allowed."""
    build = await _built(builds_host, "df-victim", make_repo(repo_dir / "victim", {"index.html": "secret"}), "v")
    vid = builds_host.tenant_ids["df-victim"]
    image = str(build["image"])
    path = f"{vid}/v:{build['id']}"
    hex_id = docker_client.images.get(image).id.removeprefix("sha256:")
    dockerfiles = [
        f"FROM 127.1:5000/{path}\n",
        f"FROM 127.0.0.2:5000/{path}\n",
        f"FROM [::1]:5000/{path}\n",
        f"FROM [::ffff:127.0.0.1]:5000/{path}\n",
        f"FROM 2130706433:5000/{path}\n",
        f"FROM 0177.0.0.1:5000/{path}\n",
        f"FROM localhost:5000/{path} AS stolen\n",
        f"ARG X=127.1:5000/{path}\nFROM ${{X}}\n",
        f"FROM {hex_id[:12]}\n",
        f"FROM sha256:{hex_id}\n",
        f"FROM agenthost/base:bookworm\nCOPY --from={image} /srv /x\n",
        f"FROM agenthost/base:bookworm\nCOPY --from={hex_id[:12]} /srv /x\n",
        f"# escape=`\nFROM agenthost/base:bookworm\nRUN echo \\\nFROM 127.1:5000/{path}\n",
        "FROM ah-private/secret:1\n",
        # Found by fuzzing the Dockerfile reader: each hides a FROM the engine's builder sees.
        f"\ufeff# escape=`\nFROM agenthost/base:bookworm\nRUN echo \\\nFROM localhost:5000/{path}\n",
        f"#\fescape=`\nFROM agenthost/base:bookworm\nRUN echo \\\nFROM localhost:5000/{path}\n",
        f"FROM agenthost/base:bookworm\nLABEL a=\\\r\r\nFROM localhost:5000/{path}\n",
    ]
    key = builds_host.tenant("df-thief")
    async with connect(builds_host, key, "http") as client:
        for dockerfile in dockerfiles:
            repo = make_repo(repo_dir / f"thief-{uuid.uuid4().hex[:8]}", {"Dockerfile": dockerfile})
            stolen = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
            assert stolen["status"] == "failed", (dockerfile, stolen)
            assert "image_not_allowed" in stolen["error"], (dockerfile, stolen["error"])
            assert "your own builds" in stolen["hint"], stolen["hint"]
            logs = (await call(client, "build_logs", {"build_id": stolen["id"]}))["output"]
            assert "image_not_allowed" in logs and "Step 1/" not in logs, (dockerfile, logs)
    assert engine_images(docker_client, builds_host.tenant_ids["df-thief"]) == []


async def test_deploy_refuses_a_retagged_build_image(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    """A build runs exactly the image it made: the same tag on another image is refused, by id and reference."""
    build = await _built(builds_host, "retag", make_repo(repo_dir / "retag", {"index.html": "mine"}), "r")
    image = str(build["image"])
    repository, tag = image.rsplit(":", 1)
    docker_client.images.get("agenthost/base:bookworm").tag(repository, tag)
    async with connect(builds_host, builds_host.tenant("retag"), "http") as client:
        for args in ({"build_id": build["id"]}, {"image": image}):
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "swapped", **args})
            assert err.value.code == "image_not_allowed", (args, err.value)
            assert "not the image build" in err.value.message, err.value.message
        assert (await call(client, "list_services"))["services"] == []
    docker_client.images.remove(image)


async def test_restart_fails_an_interrupted_build_and_keeps_logs(
    builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient
) -> None:
    marker = uuid.uuid4().hex
    repo = make_repo(
        repo_dir / "crash",
        {"Dockerfile": f"FROM agenthost/base:bookworm\nENV AH_MARK={marker}\nRUN echo crash-{marker} && sleep 300\n"},
    )
    key = builds_host.tenant("bld-restart")
    async with connect(builds_host, key, "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "wait": False})
        await until(client, "build_logs", {"build_id": build["id"]}, lambda logs: f"crash-{marker}" in logs["output"])
    builds_host.kill_server()  # a crash: no chance to clean up
    async with connect(builds_host, key, "http") as client:
        got = await call(client, "get_build", {"build_id": build["id"]})
        assert got["status"] == "failed"
        assert "interrupted" in got["error"]
        assert f"crash-{marker}" in got["log_tail"]
        logs = await call(client, "build_logs", {"build_id": build["id"]})
        assert f"crash-{marker}" in logs["output"]
    assert wait_for(lambda: build_leftovers(docker_client, marker) == [], 60, what="interrupted build leftovers to go")


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


async def test_build_isolation(builds_host: AgentHost, repo_dir: Path, docker_client: docker.DockerClient) -> None:
    """RUN steps cannot reach the host (control plane, registry); the context is the repository only;
    the memory limit holds."""
    listener = socket.create_server(("0.0.0.0", 0))
    port = listener.getsockname()[1]
    listener.settimeout(0.1)
    # Control: from Docker's default bridge the probe does reach the host, so a pass below means isolation.
    control = docker_client.containers.run(
        "agenthost/python:bookworm", ["python3", "-c", PROBE, str(port)], network="bridge", remove=True, runtime="runc"
    )
    assert b"probe: reached the host" in control
    repo = make_repo(
        repo_dir / "isolated",
        {
            "probe.py": PROBE,
            "Dockerfile": (
                "FROM agenthost/python:bookworm\nCOPY . /ctx\n"
                f"RUN find /ctx -mindepth 1 -maxdepth 1 | sort && python3 /ctx/probe.py {port}\n"
            ),
        },
    )
    hog = make_repo(
        repo_dir / "hog",
        {"Dockerfile": "FROM agenthost/python:bookworm\nRUN python3 -c 'b = bytearray(700 << 20); print(len(b))'\n"},
    )
    key = builds_host.tenant("bld-isolated")
    try:
        async with connect(builds_host, key, "http") as client:
            build = await call(client, "build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
            assert build["status"] == "succeeded", build
            logs = (await call(client, "build_logs", {"build_id": build["id"]}))["output"]
            assert "probe: host unreachable" in logs, logs
            listing = logs[logs.index("RUN find /ctx") :].splitlines()[2:4]
            assert listing == ["/ctx/Dockerfile", "/ctx/probe.py"], logs
            hogged = await call(client, "build_from_git", {"git_url": str(hog), "wait_timeout_s": 300})
            assert hogged["status"] == "failed", hogged
            assert "returned a non-zero code: 137" in hogged["error"], hogged
    finally:
        listener.close()
