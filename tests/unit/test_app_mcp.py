"""The MCP face of the HTTP app (streamable HTTP at /mcp) over the in-memory engine, as a client speaks it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mcp_types import LATEST_PROTOCOL_VERSION

from tests.fakes import FakeBackend, FakeBuilder

from .site import APP_IMAGE, Site


class Session:
    """One MCP session over TestClient: JSON-RPC requests, answers read from JSON or an SSE stream."""

    def __init__(self, site: Site, key: str) -> None:
        self.site = site
        self.headers = {
            "authorization": f"Bearer {key}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        self.ids = 0

    def send(self, method: str, params: dict[str, Any] | None = None, notify: bool = False) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if not notify:
            self.ids += 1
            message["id"] = self.ids
        response = self.site.client.post("/mcp", content=json.dumps(message), headers=self.headers)
        if notify:
            assert response.status_code == 202, response.text
            return None
        if "mcp-session-id" in response.headers:
            self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            answers = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
            return next(a for a in answers if a.get("id") == message["id"])
        return {"status_code": response.status_code, **response.json()}

    def open(self) -> Any:
        client = {"name": "unit", "version": "1"}
        init = self.send(
            "initialize", {"protocolVersion": LATEST_PROTOCOL_VERSION, "capabilities": {}, "clientInfo": client}
        )
        self.headers["mcp-protocol-version"] = init["result"]["protocolVersion"]
        self.send("notifications/initialized", notify=True)
        return init

    def call(self, tool: str, **arguments: Any) -> Any:
        return self.send("tools/call", {"name": tool, "arguments": arguments})["result"]


def test_initialize_list_and_call_tools(site: Site, fake_backend: FakeBackend) -> None:
    mcp = Session(site, site.key)
    init = mcp.open()
    assert init["result"]["serverInfo"]["name"] == "agenthost"
    tools = mcp.send("tools/list")["result"]["tools"]
    assert "deploy_service" in {t["name"] for t in tools}
    svc = mcp.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert not svc.get("isError") and svc["structuredContent"]["status"] == "running", svc
    got = mcp.call("get_service", service="web")
    assert got["structuredContent"]["name"] == "web"
    missing = mcp.call("get_service", service="nope")
    assert missing["isError"] and "not_found" in missing["content"][0]["text"]
    bad = mcp.call("deploy_service", name="web", image=APP_IMAGE, port="x")
    assert bad["isError"] and "invalid_input" in bad["content"][0]["text"], bad


def test_resources_and_prompts(site: Site, fake_backend: FakeBackend) -> None:
    mcp = Session(site, site.key)
    mcp.open()
    mcp.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    fake_backend.say(next(iter(fake_backend.workloads)), "a log line")
    listed = mcp.send("resources/list")["result"]["resources"]
    assert {"agenthost://platform/status", "agenthost://services"} <= {r["uri"] for r in listed}
    services = mcp.send("resources/read", {"uri": "agenthost://services"})["result"]["contents"][0]["text"]
    assert '"web"' in services
    one = mcp.send("resources/read", {"uri": "agenthost://services/web"})["result"]["contents"][0]["text"]
    assert '"web"' in one
    logs = mcp.send("resources/read", {"uri": "agenthost://services/web/logs"})["result"]["contents"][0]["text"]
    assert "a log line" in logs
    status = mcp.send("resources/read", {"uri": "agenthost://platform/status"})["result"]["contents"][0]["text"]
    assert "fake" in status
    nope = mcp.send("resources/read", {"uri": "agenthost://services/nope"})
    assert "error" in nope and "not_found" in nope["error"]["message"], nope
    prompts = mcp.send("prompts/list")["result"]["prompts"]
    assert prompts


def test_a_session_belongs_to_its_key(site: Site) -> None:
    mcp = Session(site, site.key)
    mcp.open()
    other_key = site.call("create_api_key", name="other")["key"]
    thief = Session(site, other_key)
    thief.headers["mcp-session-id"] = mcp.headers["mcp-session-id"]
    thief.headers["mcp-protocol-version"] = mcp.headers["mcp-protocol-version"]
    stolen = thief.send("tools/list")
    assert stolen["status_code"] == 404 and stolen["error"]["code"] == "not_found", stolen


def _links(result: dict[str, Any]) -> list[str]:
    return [c["uri"] for c in result["content"] if c["type"] == "resource_link"]


def _readable(mcp: Session, uri: str) -> bool:
    answer = mcp.send("resources/read", {"uri": uri})
    return "result" in answer and bool(answer["result"]["contents"][0]["text"])


def test_results_link_the_resources_they_name_and_each_link_reads(
    site: Site, fake_backend: FakeBackend, fake_builder: FakeBuilder, repo_dir: Path
) -> None:
    mcp = Session(site, site.key)
    mcp.open()
    deployed = mcp.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    service_links = ["agenthost://services/web", "agenthost://services/web/logs"]
    assert _links(deployed) == service_links and deployed["content"][0]["type"] == "text"
    assert json.loads(deployed["content"][0]["text"]) == deployed["structuredContent"]
    assert _links(mcp.call("get_service", service="web")) == service_links
    assert _links(mcp.call("restart_service", service="web")) == service_links
    mcp.call("set_env", service="web", vars={"A": "1"})
    assert _links(mcp.call("rollback_service", service="web", revision=1)) == service_links
    repo = repo_dir / "site"
    repo.mkdir()
    (repo / "index.html").write_text("hi")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "1"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args], cwd=repo, check=True)
    build = mcp.call("build_from_git", git_url=str(repo), name="site", wait_timeout_s=30)
    build_id = build["structuredContent"]["id"]
    assert _links(build) == [f"agenthost://builds/{build_id}/logs"]
    assert _links(mcp.call("get_build", build_id=build_id)) == [f"agenthost://builds/{build_id}/logs"]
    fake_backend.images |= fake_builder.images
    from_build = mcp.call("deploy_service", name="app", build_id=build_id)
    assert _links(from_build)[-1] == f"agenthost://builds/{build_id}/logs"
    for uri in {*service_links, *_links(from_build)}:
        assert _readable(mcp, uri), uri
    assert _links(mcp.call("list_services")) == []
