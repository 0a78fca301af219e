"""Databases whose data is moving off a drained node (``backups.moves``), each row naming the process that moves
it (``owners.owner_token``), so that a move whose process died is found and undone."""

from __future__ import annotations

from dataclasses import dataclass

from .db import Database, now_iso

__all__ = ["DataMove", "MoveRepo"]


@dataclass(frozen=True)
class DataMove:
    database_id: str
    tenant_id: str
    node: str
    owner: str


class MoveRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, database_id: str, tenant_id: str, node: str, owner: str) -> bool:
        """Record the move; False when one of this database is already under way (another drain)."""
        changed = await self._db.execute(
            "INSERT INTO data_moves (database_id, tenant_id, node, owner, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (database_id) DO NOTHING",
            (database_id, tenant_id, node, owner, now_iso()),
        )
        return changed > 0

    async def finish(self, database_id: str) -> None:
        await self._db.execute("DELETE FROM data_moves WHERE database_id = ?", (database_id,))

    async def all(self) -> list[DataMove]:
        rows = await self._db.fetchall("SELECT database_id, tenant_id, node, owner FROM data_moves")
        return [DataMove(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def claim(self, move: DataMove, claimer: str) -> bool:
        """Take over a move whose process died; only one process wins the claim."""
        changed = await self._db.execute(
            "UPDATE data_moves SET owner = ? WHERE database_id = ? AND owner = ?",
            (claimer, move.database_id, move.owner),
        )
        return changed > 0
