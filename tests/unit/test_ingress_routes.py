"""Routes follow services (orchestrator/ingress/manager.py) and render to one Caddy configuration
(orchestrator/ingress/config.py), over the in-memory engine; Caddy itself is tested in tests/e2e/test_ingress.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.errors import Conflict, IngressUnavailable
from orchestrator.ingress import (
    CaddyAdmin,
    Route,
    caddy_command,
    clear_stale_socket,
    migrate_queued_connections,
    render,
)
from orchestrator.settings import Settings

from .site import APP_IMAGE, Site


def _routes(site: Site) -> dict[str, Route]:
    return {r.service: r for r in site.run(site.platform.ingress.routes)}


def _server(config: dict[str, Any]) -> dict[str, Any]:
    return config["apps"]["http"]["servers"]["agenthost"]  # type: ignore[no-any-return]


def test_a_service_gets_a_stable_public_url_and_a_route_to_its_port(site: Site) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert svc["url"] == "https://web-acme.localhost" and svc["public"] is True
    route = _routes(site)["web"]
    assert route.host == "web-acme.localhost" and route.upstream == svc["internal_url"].removeprefix("http://")
    listed = site.call("list_services")["services"]
    assert listed[0]["url"] == svc["url"]


def test_a_stopped_service_keeps_its_route_with_the_503_page_and_a_deleted_one_loses_it(site: Site) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    stopped = site.call("stop_service", service="web")
    assert stopped["url"] == "https://web-acme.localhost"
    assert _routes(site)["web"] == Route(host="web-acme.localhost", service="web", state="stopped")
    site.call("start_service", service="web")
    assert _routes(site)["web"].upstream is not None
    site.call("delete_service", service="web", confirm=True)
    assert _routes(site) == {}


def test_private_services_and_services_without_a_port_get_no_route(site: Site) -> None:
    private = site.call("deploy_service", name="internal", image=APP_IMAGE, port=8000, public=False)
    assert private["url"] is None and private["public"] is False
    worker = site.call("deploy_service", name="worker", image=APP_IMAGE)
    assert worker["url"] is None
    assert _routes(site) == {}
    opened = site.call("update_service", service="internal", public=True)
    assert opened["url"] == "https://internal-acme.localhost"
    assert set(_routes(site)) == {"internal"}


def test_the_configuration_is_the_same_whatever_the_order_of_routes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, base_domain="apps.example.com", ingress_acme_email="ops@example.com")
    a = Route("a-t.apps.example.com", "a", "127.0.0.1:4000", "running")
    b = Route("b-t.apps.example.com", "b")
    assert render(settings, [a, b], tmp_path) == render(settings, [b, a, b], tmp_path)
    config = render(settings, [a, b], tmp_path)
    routes = _server(config)["routes"]
    assert [r["match"][0]["host"] for r in routes[:-1]] == [[a.host], [b.host]]
    assert routes[0]["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:4000"}]
    assert routes[1]["handle"][0]["status_code"] == 503 and "stopped" in routes[1]["handle"][0]["body"]
    assert "match" not in routes[-1] and routes[-1]["handle"][0]["status_code"] == 404
    assert config["apps"]["tls"]["automation"]["policies"] == [
        {"issuers": [{"module": "acme", "email": "ops@example.com"}]}
    ]
    assert config["admin"]["listen"] == f"unix/{tmp_path / 'ingress' / 'admin.sock'}"


def test_the_internal_ca_is_never_installed_and_covers_unrouted_hosts(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, base_domain="ingress.localhost", ingress_internal_ca=True, ingress_https_port=8443
    )
    config = render(settings, [], tmp_path)
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    assert config["apps"]["tls"]["certificates"] == {"automate": ["*.ingress.localhost"]}
    redirect = config["apps"]["http"]["servers"]["agenthost-http"]["routes"][0]["handle"][0]
    assert redirect["headers"]["Location"] == ["https://{http.request.host}:8443{http.request.uri}"]


def test_on_demand_tls_is_restricted_to_routed_hosts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, base_domain="apps.example.com", ingress_on_demand_tls=True)
    policies = render(settings, [Route("a-t.apps.example.com", "a")], tmp_path)["apps"]["tls"]["automation"]["policies"]
    assert policies[0]["subjects"] == ["a-t.apps.example.com"] and policies[0]["on_demand"] is True
    assert not any(p.get("on_demand") for p in policies[1:])


@pytest.mark.anyio
async def test_a_missing_admin_socket_is_ingress_unavailable(tmp_path: Path) -> None:
    with pytest.raises(IngressUnavailable, match="does not exist"):
        await CaddyAdmin(tmp_path / "admin.sock").config()


@pytest.mark.anyio
async def test_a_socket_nobody_answers_on_is_ingress_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    listener = await anyio.create_unix_listener(path)
    await listener.aclose()  # the file stays, nothing listens: a Caddy that died
    with pytest.raises(IngressUnavailable, match="did not answer"):
        await CaddyAdmin(path, timeout_s=2).load({})


def test_caddy_runs_on_a_private_config_with_its_files_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    argv, env = caddy_command(settings, {"admin": {}})
    path = tmp_path / "ingress" / "caddy.json"
    assert argv == ["caddy", "run", "--config", str(path)]
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "ingress").stat().st_mode & 0o777 == 0o700
    assert {env["HOME"], env["XDG_DATA_HOME"], env["XDG_CONFIG_HOME"]} == {str(tmp_path / "ingress")}


@pytest.mark.anyio
async def test_a_dead_caddys_socket_is_cleared_and_a_live_ones_is_not(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    listener = await anyio.create_unix_listener(path)
    with pytest.raises(Conflict, match="already listens"):
        clear_stale_socket(path)
    await listener.aclose()
    clear_stale_socket(path)
    assert not path.exists()
    clear_stale_socket(path)  # nothing there: nothing to do


def test_get_service_shows_traffic_only_for_a_routed_service(site: Site) -> None:
    routed = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert "traffic" not in routed  # deploy answers without reading the proxy's logs
    traffic = site.call("get_service", service="web")["traffic"]
    assert (traffic["requests"], traffic["errors_5xx"], traffic["p50_ms"], traffic["window_s"]) == (0, 0, None, 300)
    site.call("deploy_service", name="internal", image=APP_IMAGE, port=8000, public=False)
    site.call("deploy_service", name="worker", image=APP_IMAGE)
    for name, port in (("internal", True), ("worker", False)):
        got = site.call("get_service", service=name)
        assert got["traffic"] is None and got["url"] is None and bool(got["internal_url"]) is port, got


def test_the_kernel_is_told_to_hand_queued_connections_to_the_new_listener(tmp_path: Path) -> None:
    knob = tmp_path / "tcp_migrate_req"
    knob.write_text("0\n")
    assert migrate_queued_connections(knob) is None
    assert knob.read_text() == "1\n"
    why = migrate_queued_connections(tmp_path / "absent" / "tcp_migrate_req")  # a kernel before 5.14
    assert why is not None and "tcp_migrate_req" in why and "reset" in why
