"""Tenants' private networks: made on demand by the backend, given back once nothing uses them.

A tenant's services and databases join its private network (``ah-net-<tenant>``, one subnet of
``tenant_network_pool``). The network is
removed once the tenant has no service and no database record left, in any state: the store decides,
and a record is written before its workload is made, so a deploy under way keeps the network. The
use-case that removed the last workload removes the network; a reconciler pass does it too, for deletes
that died half-way or were finished by the reconciler. Either way the subnet returns to the pool.

One race remains: a collector reads the store just before a deploy's record is written, and removes the
network after the deploy found it there but before its container started. The Docker backend then makes
the network again and starts the container once more (``DockerBackend.ensure_workload``).

On Nomad the bridges are made on each node by the jobs' prestart task, and the control plane has no
access to the nodes' engines: they are not collected (the backend lists none and removes none).
"""

from __future__ import annotations

import logging

from ..backends.base import Backend
from ..errors import AgentHostError
from ..labels import tenant_network, tenant_of_network
from ..store import Store

__all__ = ["NetworkCollector"]

log = logging.getLogger(__name__)


class NetworkCollector:
    def __init__(self, store: Store, backend: Backend) -> None:
        self.store = store
        self.backend = backend

    async def release(self, tenant_id: str) -> bool:
        """After a workload of ``tenant_id`` went: remove its network when nothing is left to use it.

        An engine that fails here is logged, not raised: the workload is gone, which is what the caller
        asked for, and the reconciler's pass removes the network later.
        """
        try:
            return await self._remove_if_unused(tenant_id)
        except AgentHostError as exc:
            log.warning("network of tenant %s not removed (the reconciler tries again): %s", tenant_id, exc)
            return False

    async def collect(self) -> dict[str, int]:
        """The reconciler's pass: remove every tenant network of this platform that nothing uses."""
        removed = 0
        for name in await self.backend.list_networks({}):
            tenant = tenant_of_network(name)
            if tenant is not None and await self._remove_if_unused(tenant):
                log.info("removed network %s: its tenant has no services or databases left", name)
                removed += 1
        return {"networks_removed": removed}

    async def _remove_if_unused(self, tenant_id: str) -> bool:
        ts = self.store.scoped(tenant_id)
        if await ts.services.any() or await ts.databases.any():
            return False
        return await self.backend.remove_network(tenant_network(tenant_id))
