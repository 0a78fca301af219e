from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import Conflict, NotFound
from orchestrator.models import ServiceSpec
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
