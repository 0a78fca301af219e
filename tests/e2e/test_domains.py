"""Custom domains through the real proxy, as a tenant and a web client see them: add_domain answers with a
TXT record to publish; once the test's own DNS server on 127.0.0.1 (tests/dns_zone.py, the platform's
AGENTHOST_DNS_RESOLVER) serves it, the domain answers over HTTPS through Caddy with the service's page.
Requests go to 127.0.0.1 with the domain in SNI and Host, trusting Caddy's internal CA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import httpx
import pytest

from tests.dns_zone import Zone, serve_zone

from .harness import ToolFailed, call, connect
from .proxy import DOMAIN, Ingress, running_ingress

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@dataclass
class Proxy:
    ingress: Ingress
    zone: Zone

    def url(self, domain: str) -> str:
        return f"https://{domain}:{self.ingress.https_port}"

    def assert_no_route(self, domain: str) -> None:
        """No certificate for ``domain`` (its TLS handshake fails), and a request for it that arrives over
        another name's TLS finds no route either: the 404 page."""
        with pytest.raises(httpx.ConnectError):
            self.ingress.get(self.url(domain))
        status, page = self.ingress.get(self.url(domain), sni=f"nobody-nowhere.{DOMAIN}")
        assert status == 404 and "No service answers" in page, page


@pytest.fixture(scope="module")
def proxy(docker_client: object, hello_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with serve_zone() as zone, running_ingress(tmp_path_factory, {"AGENTHOST_DNS_RESOLVER": zone.resolver}) as ing:
        yield Proxy(ing, zone)


async def test_a_domain_answers_over_https_once_its_txt_record_is_published(proxy: Proxy, hello_image: str) -> None:
    host = proxy.ingress.host
    async with connect(host, host.tenant("acme"), "stdio") as client:
        await call(
            client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": "shop"}}
        )
        claim = await call(client, "add_domain", {"service": "web", "domain": "Shop.Example.COM"})
        assert claim["domain"] == "shop.example.com" and claim["status"] == "pending" and claim["url"] is None
        record = claim["publish"]
        assert record["type"] == "TXT" and record["name"] == "_agenthost-challenge.shop.example.com", record

        with pytest.raises(ToolFailed) as refused:
            await call(client, "add_domain", {"service": "web", "domain": "shop.example.com"})
        assert refused.value.code == "domain_not_verified"
        assert record["name"] in refused.value.message and record["value"] in refused.value.message
        proxy.assert_no_route("shop.example.com")

        proxy.zone.records[record["name"]] = [record["value"]]
        live = await call(client, "add_domain", {"service": "web", "domain": "shop.example.com"})
        assert live["status"] == "verified" and live["url"] == proxy.url("shop.example.com"), live
        assert proxy.ingress.get(live["url"]) == (200, "hello shop")
        assert proxy.ingress.get(proxy.ingress.url("web", "acme")) == (200, "hello shop")  # its own host too
        listed = await call(client, "list_domains", {"service": "web"})
        assert [(d["domain"], d["status"]) for d in listed["domains"]] == [("shop.example.com", "verified")]

        await call(client, "stop_service", {"service": "web"})
        status, page = proxy.ingress.get(live["url"])
        assert status == 503 and "stopped" in page, page
        await call(client, "start_service", {"service": "web"})
        assert proxy.ingress.get(live["url"]) == (200, "hello shop")

        removed = await call(client, "remove_domain", {"service": "web", "domain": "shop.example.com"})
        assert removed["name"] == "shop.example.com"
        proxy.assert_no_route("shop.example.com")
        assert proxy.ingress.get(proxy.ingress.url("web", "acme")) == (200, "hello shop")
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_an_international_domain_is_stored_shown_and_routed_in_punycode(proxy: Proxy, hello_image: str) -> None:
    host = proxy.ingress.host
    async with connect(host, host.tenant("acme"), "stdio") as client:
        await call(
            client,
            "deploy_service",
            {"name": "books", "image": hello_image, "port": 8000, "env": {"GREETING": "books"}},
        )
        claim = await call(client, "add_domain", {"service": "books", "domain": "Bücher.Example.com"})
        assert claim["domain"] == "xn--bcher-kva.example.com", claim
        proxy.zone.records[claim["publish"]["name"]] = [claim["publish"]["value"]]
        live = await call(client, "add_domain", {"service": "books", "domain": "bücher.example.com"})
        assert live["status"] == "verified" and live["url"] == proxy.url("xn--bcher-kva.example.com")
        assert proxy.ingress.get(live["url"]) == (200, "hello books")
        await call(client, "delete_service", {"service": "books", "confirm": True})
        assert (await call(client, "list_domains"))["domains"] == []
        proxy.assert_no_route("xn--bcher-kva.example.com")


async def test_attack_another_tenant_claims_a_domain(proxy: Proxy, hello_image: str) -> None:
    host = proxy.ingress.host
    async with (
        connect(host, host.tenant("owner"), "stdio") as owner,
        connect(host, host.tenant("thief"), "stdio") as thief,
    ):
        for client, greeting in ((owner, "owner"), (thief, "thief")):
            await call(
                client,
                "deploy_service",
                {"name": "site", "image": hello_image, "port": 8000, "env": {"GREETING": greeting}},
            )
        claim = await call(owner, "add_domain", {"service": "site", "domain": "owned.example.com"})
        pending = await call(owner, "add_domain", {"service": "site", "domain": "pending.example.com"})
        proxy.zone.records[claim["publish"]["name"]] = [claim["publish"]["value"]]
        assert (await call(owner, "add_domain", {"service": "site", "domain": "owned.example.com"}))[
            "status"
        ] == "verified"

        for domain in ("owned.example.com", "OWNED.example.com", "pending.example.com"):
            with pytest.raises(ToolFailed) as refused:
                await call(thief, "add_domain", {"service": "site", "domain": domain})
            assert refused.value.code == "conflict", domain
        # Publishing the owner's token does not help the thief: its claim never exists.
        proxy.zone.records[pending["publish"]["name"]] = [pending["publish"]["value"]]
        with pytest.raises(ToolFailed) as refused:
            await call(thief, "add_domain", {"service": "site", "domain": "pending.example.com"})
        assert refused.value.code == "conflict"
        with pytest.raises(ToolFailed) as hidden:
            await call(thief, "remove_domain", {"service": "site", "domain": "owned.example.com"})
        assert hidden.value.code == "not_found"
        assert (await call(thief, "list_domains"))["domains"] == []
        # Names that would capture other hosts are refused before anything is stored.
        for bad in ("*.example.com", f"site-owner.{DOMAIN}", "127.0.0.1", "localhost"):
            with pytest.raises(ToolFailed) as invalid:
                await call(thief, "add_domain", {"service": "site", "domain": bad})
            assert invalid.value.code == "invalid_input", bad

        assert proxy.ingress.get(proxy.url("owned.example.com")) == (200, "hello owner")
        for client in (owner, thief):
            await call(client, "delete_service", {"service": "site", "confirm": True})
        proxy.assert_no_route("owned.example.com")


async def _traffic(client: object, service: str, requests: int) -> int:
    """get_service's request count once it reaches ``requests`` (Caddy logs a request as it ends; bounded)."""
    with anyio.fail_after(15):
        while (got := (await call(client, "get_service", {"service": service}))["traffic"]["requests"]) < requests:
            await anyio.sleep(0.1)
    return int(got)


async def test_a_domains_requests_count_for_the_service_that_held_it_then(proxy: Proxy, hello_image: str) -> None:
    host = proxy.ingress.host
    domain = "moved.example.com"
    async with (
        connect(host, host.tenant("holder"), "stdio") as holder,
        connect(host, host.tenant("taker"), "stdio") as taker,
    ):
        for client in (holder, taker):
            await call(client, "deploy_service", {"name": "site", "image": hello_image, "port": 8000})
            claim = await call(client, "add_domain", {"service": "site", "domain": domain})
            proxy.zone.records[claim["publish"]["name"]] = [claim["publish"]["value"]]
            assert (await call(client, "add_domain", {"service": "site", "domain": domain}))["status"] == "verified"
            sent = 3 if client is holder else 2
            assert [proxy.ingress.get(proxy.url(domain))[0] for _ in range(sent)] == [200] * sent
            assert await _traffic(client, "site", sent) == sent  # the domain counts for the service it leads to
            if client is holder:
                await call(client, "remove_domain", {"service": "site", "domain": domain})
        assert await _traffic(holder, "site", 3) == 3  # what the domain carried after it moved is not the holder's
        for client in (holder, taker):
            await call(client, "delete_service", {"service": "site", "confirm": True})
