"""Revisions and rollback through a real MCP client on real Docker: every deploy, env change and update is a
revision; rollback_service brings back the image, config and env of one (checked by what the service answers
over HTTP); env values never appear; another tenant can neither list nor roll back; results link resources
the same client can read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from mcp_types import ResourceLink, TextResourceContents

from orchestrator.settings import Settings

from .harness import AgentHost, ToolFailed, call, connect, make_repo

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SECOND_APP = """
import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"v2 {os.environ.get('GREETING', 'world')}".encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""
SECOND_IMAGE = "ah-test/revisions-v2:1"


@pytest.fixture(scope="module")
def second_image(
    docker_client: docker.DockerClient, platform_images: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Another small HTTP service (it answers ``v2 $GREETING``), to update the hello app to."""
    ctx = tmp_path_factory.mktemp("revisions-v2")
    (ctx / "app.py").write_text(SECOND_APP)
    (ctx / "Dockerfile").write_text(
        f'FROM {platform_images.image_python}\nCOPY app.py /app/app.py\nCMD ["python3", "/app/app.py"]\n'
    )
    docker_client.images.build(path=str(ctx), tag=SECOND_IMAGE, rm=True, pull=False)
    yield SECOND_IMAGE
    try:
        docker_client.images.remove(SECOND_IMAGE)
    except docker.errors.NotFound:
        pass


async def _answer(client: Any, service: str) -> str:
    url = (await call(client, "get_service", {"service": service}))["internal_url"]
    return httpx.get(url, timeout=5).text


async def test_revisions_record_each_change_and_rollback_restores_image_config_and_env(
    agenthost: AgentHost, hello_image: str, second_image: str, docker_client: docker.DockerClient
) -> None:
    secrets = ("first-greeting-s3cret", "second-greeting-s3cret")
    async with connect(agenthost, agenthost.tenant("revisions"), "http") as client:
        deploy = {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": secrets[0]}}
        first = await call(client, "deploy_service", deploy)
        assert first["status"] == "running", first
        assert await _answer(client, "web") == f"hello {secrets[0]}"
        await call(client, "set_env", {"service": "web", "vars": {"GREETING": secrets[1]}})
        await call(client, "update_service", {"service": "web", "image": second_image, "memory_mb": 192})
        assert await _answer(client, "web") == f"v2 {secrets[1]}"

        raw = await client.call_tool("list_revisions", {"service": "web"})
        listing = raw.structured_content
        assert listing is not None and not raw.is_error
        assert [(r["number"], r["cause"], r["live"]) for r in listing["revisions"]] == [
            (3, "update: image, memory_mb", True),
            (2, "set_env: GREETING", False),
            (1, "deploy", False),
        ]
        assert [r["image"] for r in listing["revisions"]] == [second_image, hello_image, hello_image]
        assert listing["revisions"][2]["digest"] == docker_client.images.get(hello_image).id
        assert listing["revisions"][0]["digest"] == docker_client.images.get(second_image).id
        wire = json.dumps(raw.model_dump(mode="json"))
        assert not any(s in wire for s in secrets), "an env value reached list_revisions"

        rolled = await call(client, "rollback_service", {"service": "web", "revision": 1})
        assert (rolled["service"], rolled["revision"], rolled["status"]) == ("web", 4, "running"), rolled
        assert await _answer(client, "web") == f"hello {secrets[0]}"
        svc = await call(client, "get_service", {"service": "web"})
        assert (svc["image"], svc["memory_mb"], svc["port"]) == (hello_image, first["memory_mb"], 8000)
        after = (await call(client, "list_revisions", {"service": "web"}))["revisions"]
        assert (after[0]["cause"], after[0]["live"], after[0]["number"]) == ("rollback of 1", True, 4)
        assert after[0]["env_version"] == after[3]["env_version"] != after[1]["env_version"]

        with pytest.raises(ToolFailed) as missing:
            await call(client, "rollback_service", {"service": "web", "revision": 99})
        assert missing.value.code == "not_found" and "no revision 99" in missing.value.message
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_attack_another_tenant_cannot_list_or_roll_back_my_service(
    agenthost: AgentHost, hello_image: str
) -> None:
    async with connect(agenthost, agenthost.tenant("rev-owner"), "http") as owner:
        svc = await call(owner, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        await call(owner, "set_env", {"service": "web", "vars": {"GREETING": "owner-only"}})
        async with connect(agenthost, agenthost.tenant("rev-thief"), "stdio") as thief:
            for ref in ("web", svc["id"]):
                for tool, args in (("list_revisions", {}), ("rollback_service", {"revision": 1})):
                    with pytest.raises(ToolFailed) as err:
                        await call(thief, tool, {"service": ref, **args})
                    assert err.value.code == "not_found", (tool, ref)
        mine = (await call(owner, "list_revisions", {"service": "web"}))["revisions"]
        assert [(r["number"], r["live"]) for r in mine] == [(2, True), (1, False)]
        assert await _answer(owner, "web") == "hello owner-only"
        await call(owner, "delete_service", {"service": "web", "confirm": True})


def _links(result: Any) -> list[str]:
    return [str(c.uri) for c in result.content if isinstance(c, ResourceLink)]


async def _read(client: Any, uri: str) -> Any:
    contents = (await client.read_resource(uri)).contents[0]
    assert isinstance(contents, TextResourceContents), contents
    return json.loads(contents.text)


async def test_results_link_resources_the_client_can_read(
    agenthost: AgentHost, hello_image: str, repo_dir: Path
) -> None:
    repo = make_repo(repo_dir / "revisions-links", {"Dockerfile": "FROM agenthost/base:bookworm\nRUN echo built\n"})
    async with connect(agenthost, agenthost.tenant("rev-links"), "stdio") as client:
        deployed = await client.call_tool("deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        assert not deployed.is_error, deployed
        service_links = ["agenthost://services/web", "agenthost://services/web/logs"]
        assert _links(deployed) == service_links
        assert _links(await client.call_tool("get_service", {"service": "web"})) == service_links
        build = await client.call_tool("build_from_git", {"git_url": str(repo), "wait_timeout_s": 300})
        assert build.structured_content is not None and build.structured_content["status"] == "succeeded", build
        build_logs = f"agenthost://builds/{build.structured_content['id']}/logs"
        assert _links(build) == [build_logs]
        service = await _read(client, service_links[0])
        assert service["name"] == "web" and service["status"] == "running"
        assert "hello app starting" in (await _read(client, service_links[1]))["output"]
        assert "built" in (await _read(client, build_logs))["output"]
        await call(client, "delete_service", {"service": "web", "confirm": True})
