"""The whole Caddy configuration, rendered from agenthost's state: the same state gives the same JSON.

One HTTPS server holds a route per routed service, matched by host name: a reverse proxy to the
service's published port while its workload runs, a short 503 page while it is stopped, failed or
starting, and, last, a 404 page for every other host. A second server on the HTTP port redirects to
HTTPS (ACME's HTTP challenges are answered there too). Certificates come from Caddy's internal CA (never
installed into the host's trust store) or from ACME; with the internal CA and a base domain of two labels
or more, a wildcard certificate also lets a host nobody routes (a deleted service) finish its handshake
and get the 404.
The admin endpoint is a unix socket only, and the config is never persisted by Caddy: agenthost
reloads all of it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import Settings
from .traffic import access_logging

__all__ = ["ADMIN_ORIGIN", "Route", "render"]

# The Host header agenthost's admin requests carry; Caddy refuses any other (DNS rebinding, stray clients).
ADMIN_ORIGIN = "agenthost-ingress"
_SERVER = "agenthost"


@dataclass(frozen=True, order=True)
class Route:
    """One routed host: a service's own, or a tenant's verified domain (``custom``), and where its traffic goes
    (None: the page that says why it does not)."""

    host: str
    service: str
    upstream: str | None = None
    state: str = "stopped"
    custom: bool = False
    service_id: str = field(default="", compare=False)  # whose request counters its traffic goes to


def _page(status: int, title: str, text: str) -> dict[str, Any]:
    body = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>\n"
    )
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {"Content-Type": ["text/html; charset=utf-8"], "Cache-Control": ["no-store"]},
        "body": body,
    }


def _handler(route: Route) -> dict[str, Any]:
    if route.upstream is not None:
        # A request whose upstream cannot be dialled is tried again for a moment (a container being switched).
        # No flush_interval: Caddy already streams server-sent events and responses of unknown length as they
        # are written, and with -1 Caddy 2.6 ties each request to its configuration, so every reload (any
        # service's change) cut the requests in flight.
        return {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": route.upstream}],
            "load_balancing": {"try_duration": "2s", "try_interval": "100ms"},
        }
    why = {
        "stopped": "it is stopped: its owner can start it again with start_service.",
        "failed": "it has failed: its owner can see why with diagnose_service.",
    }.get(route.state, "it is starting; try again in a few seconds.")
    return _page(503, "Service unavailable", f"The service {route.service} is not answering because {why}")


def _issuers(settings: Settings) -> list[dict[str, Any]]:
    if settings.ingress_uses_internal_ca:
        return [{"module": "internal"}]
    acme: dict[str, Any] = {"module": "acme"}
    if settings.ingress_acme_email:
        acme["email"] = settings.ingress_acme_email
    if settings.ingress_acme_ca:
        acme["ca"] = settings.ingress_acme_ca
    if settings.ingress_acme_ca_root:  # a private ACME CA (an internal one, or a test's)
        acme["trusted_roots_pem_files"] = [str(settings.ingress_acme_ca_root)]
    return [acme]


def _tls(settings: Settings, hosts: list[str], custom: list[str]) -> dict[str, Any]:
    policy: dict[str, Any] = {"issuers": _issuers(settings)}
    tls: dict[str, Any] = {"automation": {"policies": [policy]}}
    domain = settings.ingress_domain
    if settings.ingress_uses_internal_ca and "." in domain:
        tls["certificates"] = {"automate": [f"*.{domain}"]}
    if settings.ingress_uses_internal_ca and custom:
        # A verified domain's certificate is made at its first handshake (in milliseconds, by the internal CA),
        # so it answers as soon as add_domain returns; a load only starts the issuance of the names it manages.
        tls["automation"]["policies"] = [
            {"subjects": custom, "issuers": _issuers(settings), "on_demand": True},
            policy,
        ]
    if settings.ingress_on_demand_tls and not settings.ingress_uses_internal_ca and hosts:
        # Only the routed hosts may ask for a certificate at their first handshake: the policy names them, and
        # a name outside every policy's subjects gets none.
        policy["subjects"] = hosts
        policy["on_demand"] = True
        tls["automation"]["policies"] = [policy, {"issuers": _issuers(settings)}]
    return tls


def render(settings: Settings, routes: list[Route], storage: Path) -> dict[str, Any]:
    """The complete configuration Caddy should run, for ``routes`` (any order) and certificates kept in
    ``storage``."""
    ordered = sorted(set(routes))
    bind = settings.ingress_bind
    server: dict[str, Any] = {
        "listen": [f"{bind}:{settings.ingress_https_port}"],
        "routes": [{"match": [{"host": [r.host]}], "handle": [_handler(r)], "terminal": True} for r in ordered]
        + [{"handle": [_page(404, "Not found", "No service answers at this address.")], "terminal": True}],
        # Caddy's own redirects drop a non-standard HTTPS port: the server below redirects instead.
        "automatic_https": {"disable_redirects": True},
    }
    server["logs"], logging = access_logging(settings, [(r.host, r.service_id) for r in ordered])
    https_port = settings.ingress_https_port
    location = "https://{http.request.host}" + ("" if https_port == 443 else f":{https_port}") + "{http.request.uri}"
    redirect = {
        "listen": [f"{bind}:{settings.ingress_http_port}"],
        "routes": [
            {"handle": [{"handler": "static_response", "status_code": 308, "headers": {"Location": [location]}}]}
        ],
    }
    return {
        "admin": {
            "listen": f"unix/{settings.ingress_socket}",
            "origins": [ADMIN_ORIGIN],
            "config": {"persist": False},
        },
        "storage": {"module": "file_system", "root": str(storage)},
        "logging": logging,
        "apps": {
            "http": {
                "http_port": settings.ingress_http_port,
                "https_port": settings.ingress_https_port,
                "servers": {_SERVER: server, f"{_SERVER}-http": redirect},
            },
            "tls": _tls(settings, [r.host for r in ordered], [r.host for r in ordered if r.custom]),
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
