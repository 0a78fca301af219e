"""Where ``ssh -L`` may go from a session in a service (nowhere from a sandbox): the service's own port
(as ``localhost``, ``127.0.0.1`` or its name) and the tenant's own databases by name (their engine's
port). Nothing else: no other tenant, no host, no LAN.

A forward reaches the workload at the endpoint its engine publishes for that port (the one health checks
use), so the gateway never needs a route into tenant networks. Its bytes either way count as the
connection's activity (a tunnel in use is not idle) and are recorded when it ends (``open_forward``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncssh
from asyncssh.forward import SSHForwarder

from ..backends.base import Backend, Endpoint
from ..errors import NotFound
from ..store import Store
from .manager import Target

__all__ = ["CountingForwarder", "forward_endpoint", "open_forward"]

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


class CountingForwarder(SSHForwarder):
    """One side of a forward: tells ``counted`` how many bytes it receives, and ``ended`` (once) that it closed."""

    def __init__(
        self,
        counted: Callable[[int], None],
        peer: SSHForwarder | None = None,
        ended: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(peer)
        self._counted = counted
        self._ended = ended

    def data_received(self, data: bytes, datatype: int | None = None) -> None:
        self._counted(len(data))
        super().data_received(data, datatype)

    def close(self) -> None:
        super().close()
        if self._ended is not None:
            ended, self._ended = self._ended, None
            ended()


async def open_forward(
    endpoint: Endpoint, sent: Callable[[int], None], received: Callable[[int], None], ended: Callable[[], None]
) -> SSHForwarder:
    """The channel's side of a forward to ``endpoint``: ``sent`` counts the client's bytes, ``received`` the
    workload's, ``ended`` runs once when either side closes.

    Raises: ChannelOpenError (the client sees it) when nothing answers there."""
    loop = asyncio.get_running_loop()
    try:
        _, upstream = await loop.create_connection(lambda: CountingForwarder(received), endpoint.host, endpoint.port)
    except OSError:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "nothing answers on that port now") from None
    return CountingForwarder(sent, upstream, ended)
