"""The HTTP app's REST face and its gates (auth, body limit, idempotency, roles), over the in-memory engine."""

from __future__ import annotations

from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


def test_public_routes_need_no_key_and_tools_do(site: Site) -> None:
    assert site.client.get("/v1/health").json() == {"status": "ok"}
    doc = site.client.get("/openapi.json").json()
    assert "/v1/tools/deploy_service" in doc["paths"]
    anonymous = site.client.get("/v1/tools")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong = site.client.post("/v1/tools/whoami", json={}, headers={"authorization": "Bearer ah_nope"})
    assert wrong.status_code == 401
    basic = site.client.post("/v1/tools/whoami", json={}, headers={"authorization": "Basic eDp5"})
    assert basic.status_code == 401
    listed = site.client.get("/v1/tools", headers={"authorization": f"Bearer {site.key}"}).json()["tools"]
    assert {"deploy_service", "whoami"} <= {t["name"] for t in listed}


def test_bad_bodies_and_unknown_tools_are_clear_errors(site: Site) -> None:
    auth = {"authorization": f"Bearer {site.key}"}
    unknown = site.client.post("/v1/tools/no_such_tool", json={}, headers=auth)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    not_json = site.client.post("/v1/tools/whoami", content=b"{nope", headers=auth)
    assert not_json.json()["error"]["code"] == "invalid_input"
    extra = site.call("get_service", service="web", surprise=1)
    assert extra["error"]["code"] == "invalid_input" and "surprise" in extra["error"]["message"]
    wrong_type = site.call("deploy_service", name="web", image=APP_IMAGE, port="eighty")
    assert wrong_type["error"]["code"] == "invalid_input"
    deep = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {}}}}}}}}}}}}
    for _ in range(10):
        deep = {"x": deep}
    nested = site.client.post("/v1/tools/whoami", json=deep, headers=auth)
    assert nested.json()["error"]["code"] == "invalid_input"


def test_a_body_over_the_limit_is_refused(site: Site) -> None:
    limit = site.platform.settings.max_request_bytes
    big = site.client.post(
        "/v1/tools/whoami", content=b"x" * (limit + 1), headers={"authorization": f"Bearer {site.key}"}
    )
    assert (big.status_code, big.json()["error"]["code"]) == (413, "too_large")


def test_destructive_tools_need_confirm(site: Site, fake_backend: FakeBackend) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    unconfirmed = site.call("delete_service", service="web")
    assert unconfirmed["error"]["code"] == "confirmation_required", unconfirmed
    assert fake_backend.running("service")


def test_idempotency_keys_replay_conflict_and_secret_answers(site: Site, fake_backend: FakeBackend) -> None:
    once = {"idempotency-key": "deploy-1"}
    first = site.call("deploy_service", headers=once, name="web", image=APP_IMAGE, port=8000)
    again = site.client.post(
        "/v1/tools/deploy_service",
        json={"name": "web", "image": APP_IMAGE, "port": 8000},
        headers={"authorization": f"Bearer {site.key}", **once},
    )
    assert again.headers["idempotent-replay"] == "true" and again.json()["id"] == first["id"]
    assert len(fake_backend.created) == 1
    other = site.call("deploy_service", headers=once, name="web2", image=APP_IMAGE, port=8000)
    assert other["error"]["code"] == "conflict"
    secret = {"idempotency-key": "key-1"}
    made = site.call("create_api_key", headers=secret, name="ci")
    assert made["status_code"] == 200, made
    replay = site.call("create_api_key", headers=secret, name="ci")
    assert replay["error"]["code"] == "conflict" and "secret" in replay["error"]["message"]
    too_long = site.call("whoami", headers={"idempotency-key": "k" * 300})
    assert too_long["status_code"] == 200  # read-only tools ignore the key
    bad = site.call("stop_service", headers={"idempotency-key": "k" * 300}, service="web")
    assert bad["error"]["code"] == "invalid_input"
    failed = site.call("stop_service", headers={"idempotency-key": "s-1"}, service="nope")
    assert failed["error"]["code"] == "not_found"
    assert site.call("stop_service", headers={"idempotency-key": "s-1"}, service="nope")["error"]["code"] == "not_found"


def test_keys_roles_and_tenants(site: Site) -> None:
    me = site.call("whoami")
    assert (me["tenant"], me["role"], me["scope"]) == ("acme", "member", "full"), me
    assert site.call("create_tenant", name="other")["error"]["code"] == "forbidden"
    reader = site.call("create_api_key", name="reader", scope="read")
    assert reader["status_code"] == 200, reader
    read_key = reader["key"]
    assert site.call("list_services", key=read_key)["status_code"] == 200
    refused = site.call("deploy_service", key=read_key, name="web", image=APP_IMAGE)
    assert (refused["status_code"], refused["error"]["code"]) == (403, "read_only"), refused
    keys = site.call("list_api_keys")["keys"]
    assert {k["name"] for k in keys} >= {"reader"}
    reader_id = next(k["id"] for k in keys if k["name"] == "reader")
    assert site.call("revoke_api_key", key_id=reader_id, confirm=True)["status_code"] == 200
    assert site.call("whoami", key=read_key)["status_code"] == 401
    assert site.call("revoke_api_key", key_id="nope")["error"]["code"] == "not_found"
    # The admin sees nodes; a member does not.
    assert site.call("list_nodes")["error"]["code"] == "forbidden"
    nodes = site.call("list_nodes", key=site.admin)
    assert nodes["status_code"] == 200 and nodes["nodes"][0]["id"] == "node-1", nodes
    drain = site.call("set_node_eligibility", key=site.admin, node="node-1", eligible=False)
    assert drain["error"]["code"] == "invalid_input"


def test_platform_status_shows_the_engine_and_usage(site: Site, fake_backend: FakeBackend) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, memory_mb=300)
    status = site.call("platform_status")
    assert status["status_code"] == 200, status
    assert "fake" in str(status)
    admin = site.call("platform_status", key=site.admin)
    assert admin["status_code"] == 200
    fake_backend.available = False
    # The engine's facts are kept for engine_facts_ttl_s; a call that finds the engine away drops them, so the
    # platform_status an agent asks after a backend_unavailable error says so.
    assert site.call("deploy_service", name="web2", image=APP_IMAGE)["error"]["code"] == "backend_unavailable"
    away = site.call("platform_status")
    assert away["status_code"] == 200 and "away" in str(away), away
