"""Custom domains (orchestrator/ingress/domains.py): names are checked and stored in punycode, a route exists
only once the TXT record proves ownership, and a domain belongs to one tenant at a time. DNS answers come
from a server on 127.0.0.1 (tests/dns_zone.py); Caddy itself is tested in tests/e2e/test_domains.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.ingress import Route, render
from orchestrator.ingress.hosts import custom_domain
from orchestrator.settings import Settings
from tests.dns_zone import Zone, serve_zone

from .site import APP_IMAGE, Site

PLATFORM = "apps.example.net"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("shop.example.com", "shop.example.com"),
        ("Shop.Example.COM", "shop.example.com"),  # folded to lowercase
        ("bücher.de", "xn--bcher-kva.de"),  # IDN: punycode is what is stored and shown
        ("аpple.com", "xn--pple-43d.com"),  # a Cyrillic а: never shown as the look-alike
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("ｓｈｏｐ.example.com", "shop.example.com"),  # full-width letters fold (UTS 46)
        ("a-b.example.com", "a-b.example.com"),
        ("example.apps.example.net.com", "example.apps.example.net.com"),  # the platform's name inside, not under
    ],
)
def test_a_domain_is_stored_in_lowercase_ascii(given: str, stored: str) -> None:
    assert custom_domain(given, PLATFORM) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("*.example.com", "wildcard"),
        ("*example.com", "wildcard"),
        ("shop.*.example.com", "wildcard"),
        ("1.2.3.4", "IP address"),
        ("127.1", "IP address"),
        ("::1", "IP address"),
        ("[::1]", "IP address"),
        ("localhost", "single label"),
        ("app.localhost", "the platform's own"),
        (PLATFORM, "the platform's own"),
        (f"web-acme.{PLATFORM}", "the platform's own"),
        (f"a.b.{PLATFORM.upper()}", "the platform's own"),
        ("example.com.", "trailing dot"),
        ("example.com。", "trailing dot"),
        ("example.com:443", "not a valid host name"),
        ("https://example.com", "not a valid host name"),
        ("example.com/path", "not a valid host name"),
        ("a_b.example.com", "not a valid host name"),
        ("a..example.com", "not a valid host name"),
        ("-a.example.com", "not a valid host name"),
        ("xn--zz.example.com", "not a valid host name"),  # not valid punycode
        ("shop.example.com ", "spaces or control"),
        ("shop\x00.example.com", "spaces or control"),
        ("shop\n.example.com", "spaces or control"),
        ("", "empty"),
        ("com", "single label"),
        ("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 40 + ".com", "longer than"),
    ],
)
def test_bad_domains_are_refused_with_the_reason(given: str, why: str) -> None:
    with pytest.raises(InvalidInput) as err:
        custom_domain(given, PLATFORM)
    assert why in err.value.message, err.value.message


@pytest.fixture
def zone() -> Iterator[Zone]:
    with serve_zone() as served:
        yield served


@pytest.fixture
def app_settings(app_settings: Settings, zone: Zone) -> Settings:
    return app_settings.model_copy(update={"dns_resolver": zone.resolver})


def _routes(site: Site) -> dict[str, Route]:
    return {r.host: r for r in site.run(site.platform.ingress.routes)}


def _publish(zone: Zone, claim: dict[str, Any]) -> None:
    zone.records[claim["publish"]["name"]] = [claim["publish"]["value"]]


def test_a_domain_is_routed_only_once_its_txt_record_proves_ownership(site: Site, zone: Zone) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    claim = site.call("add_domain", service="web", domain="Shop.Example.COM")
    assert claim["status"] == "pending" and claim["domain"] == "shop.example.com" and claim["url"] is None
    assert claim["publish"]["type"] == "TXT" and claim["publish"]["name"] == "_agenthost-challenge.shop.example.com"
    token = claim["publish"]["value"]
    assert len(token) >= 32 and token in claim["next_step"]
    assert "shop.example.com" not in _routes(site)

    refused = site.call("add_domain", service="web", domain="shop.example.com")
    assert refused["status_code"] == 403 and refused["error"]["code"] == "domain_not_verified"
    assert "_agenthost-challenge.shop.example.com" in refused["error"]["message"] and token in refused["error"]["hint"]
    assert "NXDOMAIN" in refused["error"]["message"]

    zone.records[claim["publish"]["name"]] = ["someone-else's-token"]
    refused = site.call("add_domain", service="web", domain="shop.example.com")
    assert refused["error"]["code"] == "domain_not_verified" and "someone-else's-token" in refused["error"]["message"]
    assert "shop.example.com" not in _routes(site)
    assert site.call("list_domains")["domains"][0]["status"] == "pending"

    zone.records[claim["publish"]["name"]] = ["v=spf1 -all", token]  # among other TXT values
    live = site.call("add_domain", service="web", domain="shop.example.com")
    assert live["status"] == "verified" and live["url"] == "https://shop.example.com" and live["publish"] is None
    route = _routes(site)["shop.example.com"]
    assert route.custom and route.service == "web" and route.upstream == svc["internal_url"].removeprefix("http://")
    again = site.call("add_domain", service="web", domain="shop.example.com")  # idempotent once verified
    assert again["status"] == "verified"
    assert [d["domain"] for d in site.call("list_domains", service="web")["domains"]] == ["shop.example.com"]

    removed = site.call("remove_domain", service="web", domain="SHOP.example.com")
    assert removed["kind"] == "domain" and removed["name"] == "shop.example.com"
    assert "shop.example.com" not in _routes(site) and "web-acme.localhost" in _routes(site)
    assert site.call("list_domains")["domains"] == []
    gone = site.call("remove_domain", service="web", domain="shop.example.com")
    assert gone["error"]["code"] == "not_found"
    fresh = site.call("add_domain", service="web", domain="shop.example.com")
    assert fresh["status"] == "pending" and fresh["publish"]["value"] != token  # a new proof for a new claim


def test_a_domain_belongs_to_one_tenant_at_a_time(site: Site, zone: Zone) -> None:
    rival = site.call("create_tenant", key=site.admin, name="rival")["key"]["key"]
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, key=rival)
    claim = site.call("add_domain", service="web", domain="shop.example.com")

    pending = site.call("add_domain", service="web", domain="shop.example.com", key=rival)
    assert pending["status_code"] == 409 and pending["error"]["code"] == "conflict", pending
    assert "another tenant" in pending["error"]["message"]
    _publish(zone, claim)
    assert site.call("add_domain", service="web", domain="shop.example.com")["status"] == "verified"
    verified = site.call("add_domain", service="web", domain="shop.example.com", key=rival)
    assert verified["error"]["code"] == "conflict"
    # The rival sees nothing of it and cannot remove it.
    assert site.call("list_domains", key=rival)["domains"] == []
    assert site.call("remove_domain", service="web", domain="shop.example.com", key=rival)["error"]["code"] == (
        "not_found"
    )
    assert _routes(site)["shop.example.com"].upstream is not None

    site.call("deploy_service", name="api", image=APP_IMAGE, port=8000)
    other = site.call("add_domain", service="api", domain="shop.example.com")
    assert other["error"]["code"] == "conflict" and "'web'" in other["error"]["message"]


def test_an_unproved_claim_lapses_so_nobody_squats_on_a_domain(site: Site, zone: Zone) -> None:
    rival = site.call("create_tenant", key=site.admin, name="rival")["key"]["key"]
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, key=rival)
    squat = site.call("add_domain", service="web", domain="shop.example.com", key=rival)
    assert squat["status"] == "pending" and squat["expires_at"] is not None
    site.run(site.platform.store.db.execute, "UPDATE domains SET created_at = '2000-01-01T00:00:00.000+00:00'")

    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    mine = site.call("add_domain", service="web", domain="shop.example.com")
    assert mine["status"] == "pending" and mine["publish"]["value"] != squat["publish"]["value"]
    assert site.call("list_domains", key=rival)["domains"] == []


def test_deleting_a_service_removes_its_domains_and_their_routes(site: Site, zone: Zone) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    _publish(zone, site.call("add_domain", service="web", domain="shop.example.com"))
    site.call("add_domain", service="web", domain="shop.example.com")
    site.call("add_domain", service="web", domain="pending.example.com")
    assert "shop.example.com" in _routes(site)
    site.call("stop_service", service="web")
    assert _routes(site)["shop.example.com"] == Route("shop.example.com", "web", None, "stopped", custom=True)
    site.call("delete_service", service="web", confirm=True)
    assert _routes(site) == {} and site.call("list_domains")["domains"] == []
    rows = site.run(site.platform.store.db.fetchall, "SELECT domain FROM domains")
    assert rows == []


def test_a_service_without_a_route_gets_no_domain(site: Site) -> None:
    site.call("deploy_service", name="internal", image=APP_IMAGE, port=8000, public=False)
    refused = site.call("add_domain", service="internal", domain="shop.example.com")
    assert refused["error"]["code"] == "invalid_input" and "public" in refused["error"]["hint"]
    assert site.call("add_domain", service="nosuch", domain="shop.example.com")["error"]["code"] == "not_found"
    bad = site.call("add_domain", service="internal", domain="*.example.com")
    assert bad["error"]["code"] == "invalid_input" and "wildcard" in bad["error"]["message"]
    assert site.call("list_domains")["domains"] == []


def test_domains_count_against_a_quota(site: Site, zone: Zone) -> None:
    site.run(
        site.platform.store.db.execute,
        "UPDATE tenants SET quotas = json_set(quotas, '$.max_domains', 2) WHERE name = 'acme'",
    )
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    site.call("add_domain", service="web", domain="a.example.com")
    site.call("add_domain", service="web", domain="b.example.com")
    over = site.call("add_domain", service="web", domain="c.example.com")
    assert over["error"]["code"] == "quota_exceeded"


def test_verified_domains_get_certificates_at_their_first_handshake_from_the_internal_ca(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, base_domain="ingress.localhost", ingress_internal_ca=True)
    own = Route("web-t.ingress.localhost", "web", "127.0.0.1:4000", "running")
    custom = Route("shop.example.com", "web", "127.0.0.1:4000", "running", custom=True)
    policies = render(settings, [own, custom], tmp_path)["apps"]["tls"]["automation"]["policies"]
    assert policies == [
        {"subjects": ["shop.example.com"], "issuers": [{"module": "internal"}], "on_demand": True},
        {"issuers": [{"module": "internal"}]},
    ]
    acme = Settings(data_dir=tmp_path, base_domain="apps.example.net", ingress_acme_email="ops@example.net")
    assert render(acme, [own, custom], tmp_path)["apps"]["tls"]["automation"]["policies"] == [
        {"issuers": [{"module": "acme", "email": "ops@example.net"}]}
    ]
    hosts = [
        r["match"][0]["host"]
        for r in render(acme, [own, custom], tmp_path)["apps"]["http"]["servers"]["agenthost"]["routes"][:-1]
    ]
    assert hosts == [["shop.example.com"], ["web-t.ingress.localhost"]]


def test_the_resolver_setting_is_an_ip_and_port() -> None:
    assert Settings(dns_resolver="127.0.0.1").dns_resolver == "127.0.0.1:53"
    assert Settings(dns_resolver="[::1]:5353").dns_resolver == "[::1]:5353"
    with pytest.raises(ValueError, match="IP:port"):
        Settings(dns_resolver="dns.example.com:53")
