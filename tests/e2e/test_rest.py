"""The same service flow over REST (httpx against `agenthost serve`), from the same tool registry."""

from __future__ import annotations

import docker
import httpx
import pytest

from .harness import AgentHost

pytestmark = [pytest.mark.e2e]


def test_rest_service_flow(agenthost: AgentHost, hello_image: str, docker_client: docker.DockerClient) -> None:
    key = agenthost.tenant("rest")
    api = httpx.Client(base_url=agenthost.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    def post(tool: str, body: dict[str, object] | None = None, **kw: object) -> httpx.Response:
        return api.post(f"/v1/tools/{tool}", json=body or {}, **kw)  # type: ignore[arg-type]

    assert httpx.get(f"{agenthost.url}/v1/health").json() == {"status": "ok"}
    assert httpx.post(f"{agenthost.url}/v1/tools/whoami", json={}).status_code == 401
    bad_key = httpx.post(f"{agenthost.url}/v1/tools/whoami", json={}, headers={"Authorization": "Bearer ah_0.x"})
    assert bad_key.status_code == 401 and bad_key.json()["error"]["code"] == "unauthorized"

    names = {t["name"] for t in api.get("/v1/tools").json()["tools"]}
    assert {"deploy_service", "set_env", "whoami", "revoke_api_key"} <= names
    spec = httpx.get(f"{agenthost.url}/openapi.json").json()
    assert "/v1/tools/deploy_service" in spec["paths"]

    created = post("deploy_service", {"name": "api", "image": hello_image, "port": 8000, "env": {"GREETING": "rest"}})
    assert created.status_code == 200, created.text
    svc = created.json()
    assert svc["status"] == "running"
    assert httpx.get(svc["internal_url"]).text == "hello rest"

    assert post("stop_service", {"service": "api"}).json()["status"] == "stopped"
    started = post("start_service", {"service": "api"}).json()
    assert httpx.get(started["internal_url"]).text == "hello rest"
    assert post("restart_service", {"service": "api"}).json()["status"] == "running"
    assert "hello app starting" in post("service_logs", {"service": "api"}).json()["output"]
    assert post("diagnose_service", {"service": "api"}).json()["likely_cause"] is None
    assert post("list_volumes").json()["volumes"] == []
    assert post("delete_volume", {"volume": "nope", "confirm": True}).json()["error"]["code"] == "not_found"

    post("set_env", {"service": "api", "vars": {"GREETING": "changed"}}).raise_for_status()
    svc = post("get_service", {"service": "api"}).json()
    assert httpx.get(svc["internal_url"]).text == "hello changed"

    # Errors: a stable code, a message, a hint and a fitting status.
    missing = post("get_service", {"service": "nope"})
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message", "hint"}
    invalid = post("deploy_service", {"name": "x", "image": hello_image, "port": 99999})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_input"
    assert post("deploy_service", {"name": "x"}).status_code == 400
    not_allowed = post("deploy_service", {"name": "x", "image": "ah-private/secret:1"})
    assert not_allowed.status_code == 403 and not_allowed.json()["error"]["code"] == "image_not_allowed"
    assert api.post("/v1/tools/get_service", content=b"not json").status_code == 400
    assert post("no_such_tool").status_code == 404
    needs_confirm = post("delete_service", {"service": "api"})
    assert needs_confirm.status_code == 409
    assert needs_confirm.json()["error"]["code"] == "confirmation_required"

    # Idempotency-Key: the retry gets the first answer and does not run again.
    headers = {"Idempotency-Key": "deploy-idem-1"}
    body = {"name": "idem", "image": hello_image, "wait": False}
    first = post("deploy_service", body, headers=headers)
    again = post("deploy_service", body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replay") == "true" and again.json()["id"] == first.json()["id"]
    assert post("deploy_service", {**body, "name": "other"}, headers=headers).status_code == 409
    post("delete_service", {"service": "idem", "confirm": True}).raise_for_status()

    deleted = post("delete_service", {"service": "api", "confirm": True})
    assert deleted.status_code == 200
    label = f"agenthost.tenant={agenthost.tenant_ids['rest']}"
    assert docker_client.containers.list(ignore_removed=True, all=True, filters={"label": label}) == []
    assert post("list_services").json() == {"services": []}
