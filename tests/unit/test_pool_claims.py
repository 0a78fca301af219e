"""The warm pool's hand-out: each pooled container goes to exactly one sandbox, across processes too."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestrator.store import Database
from orchestrator.store.sandboxes import PoolRepo

pytestmark = pytest.mark.anyio


async def test_concurrent_claims_from_two_connections_never_share(tmp_path: Path) -> None:
    # Two Database objects on one file stand for two agenthost processes sharing a data dir.
    db1, db2 = await Database.open(tmp_path / "a.db"), await Database.open(tmp_path / "a.db")
    try:
        pool1, pool2 = PoolRepo(db1), PoolRepo(db2)
        made = [await pool1.reserve("img|none|512|1", 10) for _ in range(12)]
        ids = [m for m in made if m is not None]
        assert len(ids) == 10 and made[10:] == [None, None]  # the pool size is respected
        for wid in ids[:8]:
            assert await pool1.mark_ready(wid)
        claimed: list[str | None] = []

        async def claim(db: Database, pool: PoolRepo) -> None:
            async with db.transaction() as tx:
                got = await pool.claim(tx, "img|none|512|1")
                await anyio.sleep(0)  # let the other side try while this transaction is open
            claimed.append(got)

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(claim, *((db1, pool1) if i % 2 else (db2, pool2)))
        won = [c for c in claimed if c is not None]
        assert sorted(won) == sorted(ids[:8]), "every ready container handed out exactly once"
        assert len(won) == len(set(won))
        assert {r.workload_id for r in await pool1.all()} == set(ids[8:])  # warming ones are never handed out
        async with db1.transaction() as tx:
            assert await pool1.claim(tx, "other|none|512|1") is None
    finally:
        await db1.close()
        await db2.close()
