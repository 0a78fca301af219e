"""Build records, scoped to one tenant; plus the cross-tenant queries the build runner itself needs."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..errors import NotFound
from ..models import BuildRecord, BuildStatus
from .db import Database, Executor, Row, now_iso

__all__ = ["BuildRepo", "builds_with_leftovers", "cancel_requested", "touch_builds", "unfinished_builds"]

_COLUMNS = {
    "status",
    "commit_sha",
    "recipe",
    "recipe_detail",
    "image",
    "image_digest",
    "image_size",
    "port",
    "error",
    "error_hint",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "cancel_requested",
}


def _record(row: Row) -> BuildRecord:
    return BuildRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        git_url=row["git_url"],
        ref=row["ref"],
        dockerfile=row["dockerfile"],
        timeout_s=row["timeout_s"],
        status=row["status"],
        commit=row["commit_sha"],
        recipe=row["recipe"],
        recipe_detail=row["recipe_detail"],
        image=row["image"],
        image_digest=row["image_digest"],
        image_size=row["image_size"],
        port=row["port"],
        error=row["error"],
        error_hint=row["error_hint"],
        owner=row["owner"],
        heartbeat_at=row["heartbeat_at"],
        cancel_requested=bool(row["cancel_requested"]),
        leftovers=json.loads(row["leftovers"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def unfinished_builds(db: Database) -> list[BuildRecord]:
    """Queued and running builds of every tenant: for the build runner's recovery only, never for a tool."""
    rows = await db.fetchall("SELECT * FROM builds WHERE status IN ('queued', 'running') ORDER BY created_at")
    return [_record(r) for r in rows]


async def touch_builds(db: Database, build_ids: list[str]) -> None:
    """Heartbeat of the builds this process runs (of any tenant): they are alive."""
    marks = ",".join("?" * len(build_ids))
    await db.execute(f"UPDATE builds SET heartbeat_at = ? WHERE id IN ({marks})", [now_iso(), *build_ids])


async def cancel_requested(db: Database, build_ids: list[str]) -> set[str]:
    """Which of these builds (run by this process, of any tenant) someone asked to cancel."""
    marks = ",".join("?" * len(build_ids))
    rows = await db.fetchall(f"SELECT id FROM builds WHERE cancel_requested = 1 AND id IN ({marks})", build_ids)
    return {str(r["id"]) for r in rows}


async def builds_with_leftovers(db: Database) -> list[BuildRecord]:
    """Finished builds whose layers were not removed yet (the engine was away when they ended)."""
    rows = await db.fetchall(
        "SELECT * FROM builds WHERE status IN ('failed', 'cancelled') AND leftovers != '[]' ORDER BY created_at"
    )
    return [_record(r) for r in rows]


class BuildRepo:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(
        self,
        name: str,
        git_url: str,
        ref: str | None,
        dockerfile: str | None,
        timeout_s: float,
        owner: str,
        tx: Executor | None = None,
    ) -> BuildRecord:
        build_id = "b_" + uuid.uuid4().hex[:12]
        now = now_iso()
        await (tx or self._db).execute(
            "INSERT INTO builds (id, tenant_id, name, git_url, ref, dockerfile, timeout_s, status, owner,"
            " heartbeat_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (build_id, self._tenant, name, git_url, ref, dockerfile, timeout_s, owner, now, now),
        )
        return await self.get(build_id, tx)

    async def get(self, build_id: str, tx: Executor | None = None) -> BuildRecord:
        """Raises: NotFound."""
        row = await (tx or self._db).fetchone(
            "SELECT * FROM builds WHERE tenant_id = ? AND id = ?", (self._tenant, build_id)
        )
        if row is None:
            raise NotFound(f"no build {build_id!r}", "list_builds shows your builds and their ids")
        return _record(row)

    async def find(self, name: str | None, status: BuildStatus | None, limit: int) -> list[BuildRecord]:
        sql = "SELECT * FROM builds WHERE tenant_id = ?"
        params: list[Any] = [self._tenant]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        rows = await self._db.fetchall(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit])
        return [_record(r) for r in rows]

    async def succeeded_with_image(self, image: str) -> BuildRecord | None:
        """The succeeded build that made ``image`` (a registry host's case does not matter)."""
        row = await self._db.fetchone(
            "SELECT * FROM builds WHERE tenant_id = ? AND status = 'succeeded' AND LOWER(image) = LOWER(?)"
            " ORDER BY created_at DESC LIMIT 1",
            (self._tenant, image),
        )
        return _record(row) if row is not None else None

    async def active_count(self, tx: Executor | None = None) -> int:
        row = await (tx or self._db).fetchone(
            "SELECT COUNT(*) FROM builds WHERE tenant_id = ? AND status IN ('queued', 'running')", (self._tenant,)
        )
        return int(row[0]) if row else 0

    async def finished_oldest_first(self) -> list[str]:
        """Ids of the tenant's finished builds, oldest first (whose logs go first past the log cap)."""
        rows = await self._db.fetchall(
            "SELECT id FROM builds WHERE tenant_id = ? AND status NOT IN ('queued', 'running') ORDER BY created_at, id",
            (self._tenant,),
        )
        return [str(r[0]) for r in rows]

    async def queue_position(self, build_id: str) -> int:
        """Queued builds of this tenant that are ahead of ``build_id``."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM builds b, builds me WHERE me.tenant_id = ? AND me.id = ?"
            " AND b.tenant_id = me.tenant_id AND b.status = 'queued'"
            " AND (b.created_at < me.created_at OR (b.created_at = me.created_at AND b.id < me.id))",
            (self._tenant, build_id),
        )
        return int(row[0]) if row else 0

    async def try_start(self, build_id: str, tenant_limit: int, host_limit: int) -> BuildStatus:
        """Move a queued build to running when it is first in its tenant's line and limits allow.

        Returns the build's status afterwards ('queued' when it must keep waiting).
        """
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT status, created_at FROM builds WHERE tenant_id = ? AND id = ?", (self._tenant, build_id)
            )
            if row is None:
                raise NotFound(f"no build {build_id!r}")
            if row["status"] != "queued":
                return str(row["status"])  # type: ignore[return-value]
            counts = await tx.fetchone(
                "SELECT"
                " (SELECT COUNT(*) FROM builds WHERE status = 'running'),"
                " (SELECT COUNT(*) FROM builds WHERE tenant_id = ? AND status = 'running'),"
                " (SELECT COUNT(*) FROM builds WHERE tenant_id = ? AND status = 'queued'"
                "   AND (created_at < ? OR (created_at = ? AND id < ?)))",
                (self._tenant, self._tenant, row["created_at"], row["created_at"], build_id),
            )
            assert counts is not None
            host_running, tenant_running, ahead = int(counts[0]), int(counts[1]), int(counts[2])
            if ahead or tenant_running >= tenant_limit or host_running >= host_limit:
                return "queued"
            now = now_iso()
            await tx.execute(
                "UPDATE builds SET status = 'running', started_at = ?, heartbeat_at = ? WHERE tenant_id = ? AND id = ?",
                (now, now, self._tenant, build_id),
            )
            return "running"

    async def update(self, build_id: str, **values: Any) -> None:
        unknown = set(values) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown build columns {unknown}")
        sets = ", ".join(f"{col} = ?" for col in values)
        await self._db.execute(
            f"UPDATE builds SET {sets} WHERE tenant_id = ? AND id = ?", [*values.values(), self._tenant, build_id]
        )

    async def finish(
        self,
        build_id: str,
        status: BuildStatus,
        error: str | None = None,
        hint: str | None = None,
        *,
        only_from: tuple[BuildStatus, ...] = ("queued", "running"),
        **values: Any,
    ) -> bool:
        """Record the outcome once, of a build that is in one of ``only_from``: a build already finished
        (cancelled while queued, say) keeps its state. Returns whether it was recorded."""
        unknown = set(values) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown build columns {unknown}")
        cols = {"status": status, "error": error, "error_hint": hint, "finished_at": now_iso(), **values}
        sets = ", ".join(f"{col} = ?" for col in cols)
        marks = ", ".join("?" for _ in only_from)
        changed = await self._db.execute(
            f"UPDATE builds SET {sets} WHERE tenant_id = ? AND id = ? AND status IN ({marks})",
            [*cols.values(), self._tenant, build_id, *only_from],
        )
        return changed > 0

    async def set_leftovers(self, build_id: str, layers: list[str]) -> None:
        await self._db.execute(
            "UPDATE builds SET leftovers = ? WHERE tenant_id = ? AND id = ?",
            (json.dumps(layers), self._tenant, build_id),
        )
