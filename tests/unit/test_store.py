from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.errors import AgentHostError, Conflict, NotFound
from orchestrator.models import DatabaseSpec, ServiceSpec
from orchestrator.secrets import SecretBox
from orchestrator.settings import Quotas
from orchestrator.store import Store

pytestmark = pytest.mark.anyio


def _spec() -> ServiceSpec:
    return ServiceSpec(image="img:1", runtime="runsc", memory_mb=128, cpus=0.5)


async def test_every_repo_is_scoped_to_its_tenant(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite", SecretBox(b"k" * 32))
    try:
        a = await store.tenants.create("a", Quotas())
        b = await store.tenants.create("b", Quotas())
        sa, sb = store.scoped(a.id), store.scoped(b.id)
        rec = await sa.services.insert("web", _spec())
        await sa.env.set_many(rec.id, {"TOKEN": "top-secret"})
        with pytest.raises(NotFound):
            await sb.services.get("web")
        with pytest.raises(NotFound):
            await sb.services.get(rec.id)
        assert await sb.services.all() == []
        await sb.services.update(rec.id, status="failed")
        await sb.services.delete(rec.id)
        assert (await sa.services.get(rec.id)).status == "deploying"
        assert await sb.env.get_all(rec.id) == {}
        assert await sb.env.unset(rec.id, ["TOKEN"]) == []
        assert await sa.env.get_all(rec.id) == {"TOKEN": "top-secret"}
        # Same name in another tenant is fine; twice in one tenant is not.
        await sb.services.insert("web", _spec())
        with pytest.raises(Conflict):
            await sa.services.insert("web", _spec())
        row = await store.db.fetchone("SELECT value FROM env_vars WHERE service_id = ?", (rec.id,))
        assert row is not None and b"top-secret" not in row["value"]
    finally:
        await store.close()


async def test_migrations_apply_once_and_transactions_roll_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await Store.open(path, SecretBox(b"k" * 32))
    tenant = await store.tenants.create("a", Quotas())
    with pytest.raises(RuntimeError):
        async with store.db.transaction() as tx:
            await store.scoped(tenant.id).services.insert("half", _spec(), tx)
            raise RuntimeError("crash between intent and outcome")
    assert await store.scoped(tenant.id).services.all() == []
    await store.close()
    again = await Store.open(path, SecretBox(b"k" * 32))
    rows = await again.db.fetchall("SELECT version FROM schema_migrations")
    assert len(rows) == len({r["version"] for r in rows}) >= 1
    assert (await again.db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
    await again.close()


async def test_database_superuser_password_is_kept_apart_and_old_records_keep_theirs(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite", SecretBox(b"k" * 32))
    try:
        ts = store.scoped((await store.tenants.create("a", Quotas())).id)
        spec = DatabaseSpec(
            image="pg", runtime="runsc", memory_mb=256, cpus=0.5, volume="v", port=5432, username="app", db_name="app"
        )
        new, old = ts.databases.new_id(), ts.databases.new_id()
        async with store.db.transaction() as tx:
            await ts.databases.insert(
                "new", "postgres", spec.model_copy(update={"admin_user": "postgres"}), ("t", "a"), new, tx
            )
            await ts.databases.insert("old", "postgres", spec, ("t-old", "unused"), old, tx)
        got = await ts.databases.secrets(new)
        assert (got.password, got.admin_password, got.superuser, got.all) == ("t", "a", "a", ["t", "a"])
        assert await ts.databases.password(new) == "t"
        # A record made before migration 0007 has no superuser password: its tenant user is the superuser.
        await store.db.execute("UPDATE databases SET admin_password = NULL WHERE id = ?", (old,))
        legacy = await ts.databases.secrets(old)
        assert (legacy.admin_password, legacy.superuser, legacy.all) == (None, "t-old", ["t-old"])
        assert (await ts.databases.get(old)).spec.admin_user is None
        # Each ciphertext is bound to its field: the superuser's cannot pass for the tenant's.
        await store.db.execute("UPDATE databases SET password = admin_password WHERE id = ?", (new,))
        with pytest.raises(AgentHostError, match="integrity"):
            await ts.databases.password(new)
    finally:
        await store.close()


async def test_a_read_sees_what_was_written_before_it_and_reads_run_side_by_side(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite", SecretBox(b"k" * 32))
    try:
        tenant = await store.tenants.create("a", Quotas())
        services = store.scoped(tenant.id).services
        rec = await services.insert("web", _spec())
        in_tx, seen = anyio.Event(), []

        async def writer() -> None:
            async with store.db.transaction() as tx:
                await services.update(rec.id, status="failed", tx=tx)
                in_tx.set()
                await anyio.sleep(0)  # the reader asks while this transaction is open

        async def reader() -> None:
            await in_tx.wait()
            seen.append((await services.get("web")).status)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                tg.start_soon(reader)
        assert seen == ["failed"]  # it waited for the transaction begun before it, and sees its commit

        # Reads do not hold the lock while they run: many at once all answer.
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(services.all)
    finally:
        await store.close()


class _CountingReader:
    """The reader thread's connection, counting the reads it is asked."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.reads = 0

    async def execute_fetchall(self, sql: str, params: tuple[Any, ...]) -> Any:
        self.reads += 1
        return await self.real.execute_fetchall(sql, params)

    async def close(self) -> None:
        await self.real.close()


async def test_a_short_read_runs_on_the_loop_and_a_long_one_on_the_reader_s_thread_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await Store.open(tmp_path / "db.sqlite", SecretBox(b"k" * 32))
    try:
        tenant = await store.tenants.create("a", Quotas())
        await store.scoped(tenant.id).services.insert("web", _spec())
        reader = _CountingReader(store.db._reader)
        monkeypatch.setattr(store.db, "_reader", reader)

        assert (await store.scoped(tenant.id).services.get("web")).name == "web"
        assert reader.reads == 0  # a read by name took no thread round trip

        # A listing past the loop's budget (200,000 rows) is stopped there and answered in full by the thread.
        many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT i FROM n"
        rows = await store.db.fetchall(many)
        assert reader.reads == 1
        assert len(rows) == 200000 and rows[-1]["i"] == 200000

        # The stopped read left no statement open: a checkpoint that waits for every reader completes.
        await store.db.execute("UPDATE tenants SET name = name")
        with sqlite3.connect(tmp_path / "db.sqlite") as other:
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0

        # A read that fails on the loop is asked of the thread, whose error the caller gets, as before.
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await store.db.fetchall("SELECT * FROM no_such_table")
        assert reader.reads == 2
    finally:
        await store.close()


async def test_a_read_outside_a_transaction_cannot_write(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite", SecretBox(b"k" * 32))
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await store.db.fetchall("DELETE FROM tenants RETURNING id")
    finally:
        await store.close()
