"""What every backup and restore needs besides the data: who runs it, how it runs past a tool's
bounded wait, and how the services of a volume are paused for a consistent copy.

An operation row names its process (``owners.owner_token``). Services are recorded as paused *before* they are stopped,
so whichever process finishes the operation — or recovers it after a crash — starts them again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from .errors import AgentHostError, NotFound
from .models import Principal
from .owners import owner_token
from .progress import Reporter
from .services import ServiceManager
from .store import TenantStore
from .store.backups import Table

__all__ = ["Operations"]

log = logging.getLogger(__name__)


def _system(tenant_id: str) -> Principal:
    return Principal(tenant_id=tenant_id, tenant_name="", role="member", key_id="agenthost")


class _Relay:
    """Progress from background work reaches the caller only while the caller still waits."""

    def __init__(self, report: Reporter) -> None:
        self._report = report
        self.active = True

    async def __call__(self, message: str, progress: float | None = None, total: float | None = None) -> None:
        if self.active:
            await self._report(message, progress, total)


class Operations:
    def __init__(self, services: ServiceManager, wait_timeout_s: float) -> None:
        self.services = services
        self.wait_timeout_s = wait_timeout_s
        self.owner = owner_token()
        self.tasks: TaskGroup | None = None  # the platform's; operations end with it

    async def users(self, ts: TenantStore, volume: str) -> list[str]:
        """Ids of the running services that mount a volume."""
        return [
            s.id
            for s in await ts.services.all()
            if s.desired_state == "running" and any(v.name == volume for v in s.spec.volumes)
        ]

    async def pause(self, ts: TenantStore, table: Table, op_id: str, volume: str, report: Reporter) -> list[str]:
        ids = await self.users(ts, volume)
        await ts.backups.set_paused(table, op_id, ids)  # recorded first, so a crash still brings them back
        for sid in ids:
            await report(f"stopping service {(await ts.services.get(sid)).name} for a consistent copy")
            await self.services.stop(_system(ts.tenant_id), sid)
        return ids

    async def resume(self, ts: TenantStore, table: Table, op_id: str, ids: list[str], wait: bool = True) -> None:
        for sid in ids:
            try:
                await self.services.start(_system(ts.tenant_id), sid, wait=wait)
            except NotFound:
                continue
            except AgentHostError:
                log.exception("could not restart service %s after %s", sid, op_id)
        await ts.backups.set_paused(table, op_id, [])

    async def in_background(self, work: Callable[[Reporter], Awaitable[None]], wait: bool, report: Reporter) -> None:
        """Start ``work`` in the platform's task group; wait for it at most the bounded wait."""
        done = anyio.Event()
        relay = _Relay(report)

        async def runner() -> None:
            try:
                await work(relay)
            except Exception:  # the root of a background task: escaping would stop the platform's task group
                log.exception("backup operation crashed")
            finally:
                done.set()

        if self.tasks is None:
            await runner()
        else:
            self.tasks.start_soon(runner)
            if wait:
                with anyio.move_on_after(self.wait_timeout_s):
                    await done.wait()
                if not done.is_set():
                    await report("still running; poll list_backups")
        relay.active = False
