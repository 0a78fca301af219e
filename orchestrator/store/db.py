"""SQLite in WAL mode: one connection for writes and transactions (serialized), two for reads outside them
(one on the event loop's thread for short reads, one on its own thread for the rest), numbered SQL
migrations."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import anyio

__all__ = ["Database", "Executor", "InlineReader", "Row", "Tx", "now_iso"]

Row = sqlite3.Row

# How long a read may hold the event loop's thread before it is stopped and run on the reader's thread instead.
INLINE_BUDGET_S = 0.001


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Executor(Protocol):
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int: ...
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Tx:
    """Statements inside an open transaction; only the task that opened it holds this handle."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        cur = await self._conn.execute(sql, tuple(params))
        return cur.rowcount

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        cur = await self._conn.execute(sql, tuple(params))
        row: Row | None = await cur.fetchone()
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(sql, tuple(params))
        return list(await cur.fetchall())


class InlineReader:
    """A query-only connection used on the event loop's own thread, for the reads that take microseconds (a
    key, a record by name): a round trip to a reader thread costs about 0.3 ms, the read itself 20 us.

    A read gets ``budget_s`` of the loop: SQLite's progress handler stops it past that, and it also gives up
    at once when the database is locked (no busy wait on the loop) or fails in any other way; the caller
    then runs it on the reader's thread, which answers as before, errors included. So a listing too long
    for the budget costs the loop at most the budget, never the listing."""

    def __init__(self, path: Path, budget_s: float = INLINE_BUDGET_S) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA query_only=ON")
        self._conn.execute("PRAGMA busy_timeout=0")
        self._budget_s = budget_s
        self._deadline = 0.0
        self._conn.set_progress_handler(self._past_deadline, 1000)

    def _past_deadline(self) -> bool:
        return time.perf_counter() > self._deadline

    def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Row] | None:
        """Every row, or None when the read was stopped or failed (run it on the reader's thread then)."""
        self._deadline = time.perf_counter() + self._budget_s
        try:
            cur = self._conn.execute(sql, params)
        except sqlite3.Error:
            return None
        try:
            return cur.fetchall()
        except sqlite3.Error:
            return None
        finally:
            cur.close()  # no statement left open to pin an old snapshot

    def close(self) -> None:
        self._conn.close()


class Database:
    """Every write takes one lock, so no coroutine's statement lands inside another's transaction.

    Reads outside a transaction (``fetchone``, ``fetchall``) go to query-only connections. A read waits for
    the writes and transactions issued before it (it passes through the lock, so it sees what another task
    wrote or began writing first, as when every statement ran under the lock), but it does not hold the lock
    while it runs: under WAL a reader sees every committed transaction and never blocks a writer. A read
    runs first on the event loop's thread (``InlineReader``), within a budget; one that needs longer runs
    on the reader's own thread, so a burst of those does not queue behind each other on the loop. No read
    leaves a statement open (an open one would pin an old snapshot)."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        reader: aiosqlite.Connection | None = None,
        inline: InlineReader | None = None,
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._inline = inline
        self._tx = Tx(conn)
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await _connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        db = cls(conn)
        await db._migrate()
        db._reader = await _connect(path)
        await db._reader.execute("PRAGMA query_only=ON")
        db._inline = InlineReader(path)
        return db

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
        if self._reader is not None:
            await self._reader.close()
        await self._conn.close()

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)"
        )
        cur = await self._conn.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in await cur.fetchall()}
        folder = resources.files("orchestrator.store") / "migrations"
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            version = int(entry.name.split("_", 1)[0])
            if version in applied:
                continue
            # executescript commits what is pending first, so the migration and its record share one transaction.
            await self._conn.executescript(
                f"BEGIN;\n{entry.read_text()}\n"
                f"INSERT INTO schema_migrations VALUES ({version}, '{entry.name}', '{now_iso()}');\nCOMMIT;"
            )

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; returns the number of changed rows."""
        async with self._lock:
            return await self._tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """The first row of a read, from the committed state (see the class docstring)."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Every row of a read, from the committed state (see the class docstring)."""
        params = tuple(params)
        async with self._lock:
            if self._reader is None:
                return await self._tx.fetchall(sql, params)
            # Past the writes issued before it (so it sees them), but not holding the lock while it runs.
        if self._inline is not None and (rows := self._inline.fetchall(sql, params)) is not None:
            return rows
        return list(await self._reader.execute_fetchall(sql, params))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Statements on the yielded handle commit together or not at all."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def vacuum_into(self, target: Path) -> None:
        """A consistent copy of the whole database, taken while it is in use."""
        async with self._lock:
            await self._conn.execute("VACUUM INTO ?", (str(target),))
