"""Where ``ssh -L`` may go from a session in a service (nowhere from a sandbox): the service's own port
(as ``localhost``, ``127.0.0.1`` or its name) and the tenant's own databases by name (their engine's
port). Nothing else: no other tenant, no host, no LAN.

A forward reaches the workload at the endpoint its engine publishes for that port (the one health checks
use), so the gateway never needs a route into tenant networks.
"""

from __future__ import annotations

from ..backends.base import Backend, Endpoint
from ..errors import NotFound
from ..store import Store
from .manager import Target

__all__ = ["forward_endpoint"]

_LOCAL = {"localhost", "127.0.0.1", "::1"}


async def forward_endpoint(store: Store, backend: Backend, target: Target, host: str, port: int) -> Endpoint | None:
    """The endpoint a forward to ``host:port`` from a session of ``target`` reaches, or None when refused."""
    if target.kind != "service":
        return None  # a sandbox has no ports of its own, and its network is its own policy's
    ts = store.scoped(target.tenant_id)
    try:
        svc = await ts.services.get(target.workload_id)
    except NotFound:
        return None
    if host in _LOCAL or host == svc.name:
        workload, wanted = svc.id, svc.spec.port
    else:
        try:
            db = await ts.databases.get(host)
        except NotFound:
            return None
        if db.name != host or db.desired_state != "running":
            return None
        workload, wanted = db.id, db.spec.port
    if wanted is None or port != wanted:
        return None
    st = await backend.workload_status(workload)
    return st.endpoints.get(port) if st.state == "running" else None
