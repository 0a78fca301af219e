"""Backups and restores a dead process left running, resolved by whichever process finds them first.

Every operation row names the process doing it; when that process dies (a crash, a kill), the next
platform start or reconcile pass claims the row and resolves it: a backup whose snapshot reached the
repository is complete, anything else failed, and what the operation had taken down (paused services,
a stopped Redis) is put back. No operation stays ``running`` without a live process behind it.
"""

from __future__ import annotations

import logging

from ..errors import AgentHostError
from ..owners import owner_alive
from ..store import Store, TenantStore
from ..store.backups import BackupRecord, running_operations
from .create import Creates
from .operations import Operations
from .restore import Restores

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, store: Store, ops: Operations, creates: Creates, restores: Restores) -> None:
        self.store = store
        self.ops = ops
        self.creates = creates
        self.restores = restores

    async def run(self) -> dict[str, int]:
        """Resolve operations whose process died: complete if their snapshot exists, failed otherwise."""
        counts = {"backups_recovered": 0, "restores_recovered": 0}
        for table, op_id, tenant_id, owner in await running_operations(self.store.db):
            if owner_alive(owner):
                continue
            ts = self.store.scoped(tenant_id)
            if not await ts.backups.claim_abandoned(table, op_id, owner, self.ops.owner):
                continue
            if not self.ops.backend.local_volumes:  # its restic job outlives it on a node (no pdeathsig there)
                await self.ops.remote.stop_jobs(tenant_id, op_id)
            if table == "backups":
                await self._recover_backup(ts, await ts.backups.get(op_id))
                counts["backups_recovered"] += 1
            else:
                await self.restores.recover(ts, await ts.backups.get_restore(op_id))
                counts["restores_recovered"] += 1
        return counts

    async def _recover_backup(self, ts: TenantStore, rec: BackupRecord) -> None:
        snapshot, note = None, ""
        try:
            repo = await self.ops.repo(ts, rec.target)
            await repo.ensure()
            await repo.unlock()
            found = await repo.snapshots(f"ah:{rec.id}")
            snapshot = found[0].id if found else None
        except AgentHostError as exc:
            note = f" (the repository could not be checked: {exc.message})"
        await self.creates.cleanup(ts, rec)
        await self.ops.resume(ts, "backups", rec.id, rec.paused_services, wait=False)
        if snapshot is not None:
            await ts.backups.finish(rec.id, "complete", snapshot_id=snapshot)
            await self.ops.note(ts, rec, "succeeded", "its process died, but the snapshot reached the repository")
        else:
            error = "interrupted: the control plane stopped during the backup; create_backup again" + note
            await ts.backups.finish(rec.id, "failed", error=error)
            await self.ops.note(ts, rec, "failed", error)
        log.warning("recovered backup %s of a dead process: %s", rec.id, "complete" if snapshot else "failed")
