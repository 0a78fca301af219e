"""Ingress use-cases: every service with a port gets ``https://<service>-<tenant>.<domain>``, served by Caddy,
and each of its tenant's verified custom domains (``domains.py``) a route of its own to the same place.

The routes are never edited one by one: the whole configuration is rendered from the store and the engine
(``routes``) and, when it differs from what Caddy runs, loaded whole (``POST /load``). That is idempotent,
so every lifecycle change of a service (``follow``) and every reconciler pass (``reconcile``) does the same
thing, any process on the data dir may do it, and a Caddy that restarted or missed an update is healed by
the next one. A load is atomic, and an unchanged configuration (compared with ``GET /config/`` first) is not
sent at all, so open connections are not disturbed by a pass that changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from ..backends.base import Backend, WorkloadStatus
from ..errors import IngressUnavailable
from ..models import ServiceRecord
from ..settings import Settings
from ..store import Store, TenantStore, all_service_records, verified_domains
from .caddy import CaddyAdmin
from .config import Route, render
from .hosts import service_host
from .traffic import Traffic, prune, read_traffic

__all__ = ["IngressManager"]

log = logging.getLogger(__name__)


class IngressManager:
    def __init__(self, settings: Settings, store: Store, backend: Backend, admin: CaddyAdmin | None = None) -> None:
        """``admin``: Caddy's admin API (default: the socket ``settings.ingress_socket``)."""
        self.settings = settings
        self.store = store
        self.backend = backend
        self.admin = admin or CaddyAdmin(settings.ingress_socket)
        self._lock = anyio.Lock()  # one render-and-load at a time in this process: the last one wins whole

    @property
    def storage(self) -> Path:
        """Where Caddy keeps certificates and its internal CA (``pki/authorities/local/root.crt``)."""
        return self.settings.ingress_dir / "caddy"

    def host(self, rec: ServiceRecord, tenant: str) -> str | None:
        """The host name ``rec`` answers at, or None when it gets no route (no port, not public, ingress off)."""
        if not self.settings.ingress or not rec.spec.port or not rec.spec.public or rec.desired_state == "deleted":
            return None
        return service_host(rec.name, tenant, self.settings.ingress_domain)

    def url(self, host: str) -> str:
        port = self.settings.ingress_https_port
        return f"https://{host}" + ("" if port == 443 else f":{port}")

    async def public_url(self, ts: TenantStore, rec: ServiceRecord) -> str | None:
        """The stable address of ``rec`` (its route answers 503 while it is stopped), or None."""
        if not self.settings.ingress:
            return None
        host = self.host(rec, (await self.store.tenants.get(ts.tenant_id)).name)
        return self.url(host) if host else None

    async def routes(self) -> list[Route]:
        """Every route, from the records of all tenants and what the engine reports of their workloads.

        Raises: BackendUnavailable."""
        tenants = {t.id: t.name for t in await self.store.tenants.all()}
        workloads = {st.id: st for st in await self.backend.list_workloads({})}  # one listing, not one call each
        routes: list[Route] = []
        routed: dict[str, ServiceRecord] = {}
        for rec in await all_service_records(self.store.db):
            host = self.host(rec, tenants.get(rec.tenant_id, rec.tenant_id))
            if host is not None:
                routes.append(_route(rec, host, workloads.get(rec.id)))
                routed[rec.id] = rec
        # A tenant's proved domains lead where its service's own host does (and nowhere while it has none).
        for domain in await verified_domains(self.store.db):
            owner = routed.get(domain.service_id)
            if owner is not None and owner.tenant_id == domain.tenant_id:
                routes.append(replace(_route(owner, domain.domain, workloads.get(owner.id)), custom=True))  # noqa: PERF401
        return routes

    def render(self, routes: list[Route]) -> dict[str, Any]:
        return render(self.settings, routes, self.storage)

    async def sync(self) -> int:
        """Bring Caddy in line with the state; returns the number of routes.

        Raises: IngressUnavailable when Caddy does not answer or refuses the configuration; BackendUnavailable.
        """
        async with self._lock:
            routes = await self.routes()
            wanted = self.render(routes)
            if await self.admin.config() != wanted:
                await self.admin.load(wanted)
            return len(routes)

    async def follow(self, ts: TenantStore, rec: ServiceRecord, event: str) -> None:
        """After a service was deployed, started, restarted, updated, stopped, or before it is removed: its route
        follows. A proxy that is down does not fail the service's call; the next reconciler pass heals it."""
        if not self.settings.ingress:
            return
        try:
            await self.sync()
        except IngressUnavailable as exc:
            log.warning("routes not updated after %s of service %s: %s", event, rec.id, exc.message)

    async def reconcile(self) -> dict[str, int]:
        """The reconciler's pass. Raises: IngressUnavailable (the reconciler logs it and goes on)."""
        if not self.settings.ingress:
            return {}
        return {"routes": await self.sync(), "access_logs_removed": await self.prune_traffic()}

    async def traffic(self, ts: TenantStore, rec: ServiceRecord) -> Traffic | None:
        """What reached ``rec``'s routes lately (``traffic.py``), or None when it has no route."""
        if await self.public_url(ts, rec) is None:
            return None
        return await anyio.to_thread.run_sync(read_traffic, self.settings, rec.id, time.time())

    async def prune_traffic(self) -> int:
        """Remove the request logs of services that lost their route; returns how many files."""
        tenants = {t.id: t.name for t in await self.store.tenants.all()}
        routed = {
            rec.id
            for rec in await all_service_records(self.store.db)
            if self.host(rec, tenants.get(rec.tenant_id, rec.tenant_id)) is not None
        }
        return await anyio.to_thread.run_sync(prune, self.settings, routed, time.time())


def _route(rec: ServiceRecord, host: str, st: WorkloadStatus | None) -> Route:
    endpoint = st.endpoints.get(rec.spec.port or 0) if st is not None else None
    if rec.desired_state == "running" and st is not None and st.state in ("running", "restarting") and endpoint:
        upstream = f"{endpoint.host}:{endpoint.port}"
        return Route(host=host, service=rec.name, upstream=upstream, state="running", service_id=rec.id)
    state = "failed" if rec.status == "failed" else "stopped" if rec.desired_state == "stopped" else "starting"
    return Route(host=host, service=rec.name, state=state, service_id=rec.id)
