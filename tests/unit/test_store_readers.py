"""Reads outside a transaction go to READERS query-only connections, the one with the fewest reads in flight
first, and each sees every write issued before it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.store.db import READERS, Database

pytestmark = pytest.mark.anyio


async def test_concurrent_reads_go_to_different_readers(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        released = anyio.Event()
        used: list[int] = []
        for i, reader in enumerate(db._readers):
            run = reader.execute_fetchall

            async def held(sql: str, params: Iterable[Any], i: int = i, run: Any = run) -> Any:
                used.append(i)
                await released.wait()
                return await run(sql, params)

            reader.execute_fetchall = held  # type: ignore[method-assign]
        answers: list[Any] = []

        async def read() -> None:
            answers.append((await db.fetchone("SELECT 1"))[0])  # type: ignore[index]

        async with anyio.create_task_group() as tg:
            for _ in range(READERS):
                tg.start_soon(read)
            with anyio.fail_after(10):
                while len(used) < READERS:
                    await anyio.sleep(0.01)
            released.set()
        assert sorted(used) == list(range(READERS))
        assert answers == [1] * READERS
    finally:
        await db.close()


async def test_every_reader_sees_the_write_issued_before_it(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        await db.execute("CREATE TABLE t (n INTEGER)")
        seen: list[int] = []

        async def count() -> None:
            seen.append((await db.fetchone("SELECT COUNT(*) FROM t"))[0])  # type: ignore[index]

        for n in range(3):
            await db.execute("INSERT INTO t VALUES (?)", (n,))
            seen.clear()
            async with anyio.create_task_group() as tg:
                for _ in range(2 * READERS):
                    tg.start_soon(count)
            assert seen == [n + 1] * (2 * READERS)
    finally:
        await db.close()
