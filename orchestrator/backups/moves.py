"""A database's data moves with its tenant off a node being drained (backends whose volumes live on nodes).

A drain moves each tenant on the node to another node as a whole; a database cannot follow by itself, as its
files are on the node. So, before the node stops taking work, each database whose volume is there is stopped
(whatever it wrote is on disk then) and its files are snapshot on that node into the tenant's backup repository
(the restic job of ``backups.remote``). Once the drain has moved the tenant, the database starts on the tenant's
new node with a fresh volume there, is stopped again, and the snapshot replaces that volume's files. It then
starts on its own data; only now is the copy on the drained node given up (removed once that node is back)
and the snapshot forgotten.

What did not move says why in the drain's report (``NodeWorkload.error``), and the database is left stranded on
the drained node as before, its data intact there: with no S3 repository, when the snapshot failed (it runs
again on its old node), or when the restore failed (its volume is the drained node's copy again, and the
snapshot is kept and named).

Each move is a row naming its process (``store.moves``). When that process dies mid-move, a reconcile pass
(``recover``) undoes it: the database's volume is the drained node's copy again, and the database runs there
once that node is back (or is restored from a backup elsewhere), as if its data had never moved.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

import anyio

from ..backends.base import Backend, NodeDrain, NodeWorkload
from ..databases import DatabaseManager
from ..errors import AgentHostError, Conflict, WorkloadFailed
from ..models import DatabaseRecord
from ..owners import owner_alive
from ..progress import Reporter, silent
from ..settings import Settings
from ..store import Store, TenantStore, all_database_records
from .operations import Operations
from .remote import RESTORE_DIR
from .restic import ResticRepo

__all__ = ["DataMoves"]

log = logging.getLogger(__name__)


@dataclass
class _Move:
    ts: TenantStore
    db: DatabaseRecord
    node: str
    op: str
    repo: ResticRepo | None = None
    snapshot: str = ""
    root: list[int] | None = None
    error: str | None = None

    def workload(self) -> NodeWorkload:
        return NodeWorkload(
            id=self.db.id,
            tenant=self.db.tenant_id,
            kind="database",
            name=self.db.name,
            data_node=None if self.error is None else self.node,
            error=self.error,
        )


class DataMoves:
    def __init__(
        self, settings: Settings, store: Store, backend: Backend, databases: DatabaseManager, ops: Operations
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.databases = databases
        self.ops = ops

    async def before_drain(self, node_id: str, report: Reporter) -> list[_Move]:
        """Stop each running database whose data is on ``node_id`` and snapshot its files there."""
        names = set(await self.backend.volumes_on(node_id))
        if not names:
            return []
        moves = [
            _Move(self.store.scoped(db.tenant_id), db, node_id, "mv_" + uuid.uuid4().hex[:12])
            for db in await all_database_records(self.store.db)
            if db.spec.volume in names and db.desired_state == "running"
        ]
        for move in moves:
            if self.settings.backup_target != "s3":
                move.error = (
                    "no S3 backup repository to carry its data (the operator sets AGENTHOST_BACKUP_TARGET=s3);"
                    " its data stays on the drained node"
                )
                continue
            await self._snapshot(move, report)
        return moves

    async def after_drain(self, moves: list[_Move], drained: NodeDrain, report: Reporter) -> NodeDrain:
        """Restore each snapshot on the database's tenant's new node; the report says what moved and what did not."""
        for move in moves:
            if move.error is None:
                await self._restore(move, report)
        held = {m.db.id for m in moves}
        drained.stranded = [w for w in drained.stranded if w.id not in held]
        drained.stranded += [m.workload() for m in moves if m.error is not None]
        drained.data_moved = [m.workload() for m in moves if m.error is None]
        return drained

    async def abandon(self, moves: list[_Move]) -> None:
        """The drain failed: each stopped database runs again where its data is."""
        for move in moves:
            if move.error is None:
                await self._start(move)
                await self.store.moves.finish(move.db.id)

    async def _snapshot(self, move: _Move, report: Reporter) -> None:
        ts, db = move.ts, move.db
        try:
            await ts.backups.check_free("database", [db.name])
        except Conflict as exc:  # stopping it would break that operation; it stays, as it would without a move
            move.error = f"{exc.message}; its data stays on the node"
            return
        if not await self.store.moves.start(db.id, db.tenant_id, move.node, self.ops.owner):
            move.error = "another drain is moving its data; it stays on the node until that one is done"
            return
        try:
            move.repo = await self.ops.repo(ts, "s3")
            await move.repo.ensure()
            await ts.databases.update(db.id, status="restoring")  # the reconciler leaves it stopped
            await report(f"stopping database {db.name} to move its data off node {move.node}")
            await self.backend.stop_workload(db.id)
            await report(f"copying the files of {db.name} into its tenant's backup repository")
            move.snapshot, _, move.root = await self.ops.remote.backup(
                move.repo, ts.tenant_id, move.op, db.spec.volume, "", ["."], [f"ah-move:{db.id}"]
            )
        except AgentHostError as exc:
            move.error = f"its files could not be copied off the node ({exc.message}); its data stays there"
            with anyio.CancelScope(shield=True):
                await self._start(move)
                await self.store.moves.finish(db.id)

    async def _restore(self, move: _Move, report: Reporter) -> None:
        ts, db = move.ts, move.db
        assert move.repo is not None
        # The copy on the drained node stays until the data is safe on the new one (then ``drop_copy``), and is
        # the volume's again when the move fails (``reclaim_volume``).
        if await self.backend.release_volume(db.spec.volume, keep_copy=True) is None:
            move.error = f"node {move.node} still takes work: the drain did not start; its data stays there"
            await self._start(move)
            await self.store.moves.finish(db.id)
            return
        try:
            await report(f"starting {db.name} on its tenant's new node")
            await self._start(move)
            await self._wait(ts, db, "start on its tenant's new node")
            await ts.databases.update(db.id, status="restoring")
            await self.backend.stop_workload(db.id)
            await report(f"loading the files of {db.name} on its new node")
            then = ["replace", json.dumps(move.root)]
            await self.ops.remote.restore(
                move.repo, ts.tenant_id, move.op, db.spec.volume, RESTORE_DIR + move.op, move.snapshot, then
            )
            await self._start(move)
            await self._wait(ts, db, "start on its moved data")
        except AgentHostError as exc:
            move.error = (
                f"its data did not move ({exc.message}); it stays on node {move.node}, and a copy is in snapshot"
                f" {move.snapshot} of the tenant's backup repository"
            )
            log.warning("moving %s of tenant %s failed: %s", db.id, db.tenant_id, move.error)
            with anyio.CancelScope(shield=True):
                await self._undo(ts, db, move.node, move.error)
            return
        # The row goes first: a move whose process dies after this is done, and is never undone.
        await self.store.moves.finish(db.id)
        try:
            await self.backend.drop_copy(db.spec.volume, move.node)
            await move.repo.forget(move.snapshot)
        except AgentHostError as exc:  # a copy or a snapshot too many, no data lost
            log.warning("after moving %s off %s, %s: %s", db.id, move.node, move.snapshot, exc.message)

    async def _undo(self, ts: TenantStore, db: DatabaseRecord, node: str, why: str) -> None:
        """The database is stopped and its volume is the copy on ``node`` again; the reconciler runs it there
        once that node is back (until then it reports where its data is)."""
        await self.backend.stop_workload(db.id)  # a fresh one on the new node, if it runs
        await self.backend.reclaim_volume(db.spec.volume, node)
        await ts.databases.update(db.id, status="failed", last_error=why)
        await self.store.moves.finish(db.id)

    async def recover(self) -> dict[str, int]:
        """A reconcile pass: undo the moves whose process died."""
        undone = 0
        for row in await self.store.moves.all():
            if owner_alive(row.owner) or not await self.store.moves.claim(row, self.ops.owner):
                continue
            ts = self.store.scoped(row.tenant_id)
            db = await ts.databases.find(row.database_id)
            if db is None:
                await self.store.moves.finish(row.database_id)
                continue
            why = f"the control plane stopped while it moved the data off node {row.node}, where it stays"
            await self._undo(ts, db, row.node, why)
            log.warning("undid the move of %s off %s: its process died", db.id, row.node)
            undone += 1
        return {"data_moves_undone": undone}

    async def _start(self, move: _Move) -> None:
        await move.ts.databases.update(move.db.id, status="creating")
        try:
            await self.backend.ensure_workload(await self.databases.workload_spec(move.ts, move.db))
        except AgentHostError as exc:  # the reconciler tries again; the record says why meanwhile
            await move.ts.databases.update(move.db.id, status="failed", last_error=exc.message)

    async def _wait(self, ts: TenantStore, db: DatabaseRecord, what: str) -> None:
        after = await self.databases.wait_ready(ts, await ts.databases.get(db.id), None, silent)
        if after.status != "running":
            raise WorkloadFailed(f"{db.name} did not {what}: {after.last_error}")
