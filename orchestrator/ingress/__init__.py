"""Ingress: Caddy in front of every routed service (``manager``), its admin API (``caddy``), the configuration
rendered from agenthost's state (``config``), the rules of host names (``hosts``), how Caddy is run
(``process``), tenants' own domains (``domains``, proved by DNS in ``ownership``), and the request counters
read from Caddy's logs (``traffic``)."""

from .caddy import CaddyAdmin
from .config import Route, render
from .domains import Domain, DomainList, DomainManager, TxtRecord
from .hosts import service_host, service_label
from .manager import IngressManager
from .process import MIGRATE_REQ, caddy_command, clear_stale_socket, migrate_queued_connections
from .traffic import Traffic, read_traffic

__all__ = [
    "CaddyAdmin",
    "Domain",
    "DomainList",
    "DomainManager",
    "IngressManager",
    "MIGRATE_REQ",
    "Route",
    "caddy_command",
    "clear_stale_socket",
    "migrate_queued_connections",
    "render",
    "service_host",
    "service_label",
    "Traffic",
    "TxtRecord",
    "read_traffic",
]
