"""Idempotency-Key rows: claimed atomically, per API key, never holding a secret, and expiring."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.settings import Quotas
from orchestrator.store import Store, expire_idempotency

pytestmark = pytest.mark.anyio


async def test_one_of_many_concurrent_claims_wins(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    repo = store.scoped(tenant.id).idempotency
    answers: list[object] = []

    async def claim() -> None:
        answers.append(await repo.reserve("k1", "idem", "create_api_key", "h", lease_s=60))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(claim)
    assert answers.count(None) == 1
    assert {(e.state, e.action) for e in answers if e is not None} == {("running", "create_api_key")}  # type: ignore[attr-defined]


async def test_keys_belong_to_one_api_key_and_secrets_are_not_kept(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    repo = store.scoped(tenant.id).idempotency
    assert await repo.reserve("admin", "idem", "create_api_key", "h", 60) is None
    assert await repo.reserve("reader", "idem", "create_api_key", "h", 60) is None  # its own row, not the admin's
    await repo.finish("admin", "idem", None, 60)
    earlier = await repo.reserve("admin", "idem", "create_api_key", "h", 60)
    assert earlier is not None and earlier.state == "secret" and earlier.body is None
    rows = await store.db.fetchall("SELECT body FROM idempotency")
    assert [r["body"] for r in rows] == [None, None]


async def test_a_failed_run_releases_its_key(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    repo = store.scoped(tenant.id).idempotency
    assert await repo.reserve("k1", "idem", "deploy_service", "h", 60) is None
    await repo.release("k1", "idem")
    assert await repo.reserve("k1", "idem", "deploy_service", "h", 60) is None
    await repo.finish("k1", "idem", '{"id": "s_1"}', 60)
    await repo.release("k1", "idem")  # a finished answer is never released
    earlier = await repo.reserve("k1", "idem", "deploy_service", "h", 60)
    assert earlier is not None and earlier.state == "done" and earlier.body == '{"id": "s_1"}'


async def test_rows_expire(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    repo = store.scoped(tenant.id).idempotency
    assert await repo.reserve("k1", "fresh", "deploy_service", "h", 60) is None
    assert await repo.reserve("k1", "old", "deploy_service", "h", 60) is None
    await repo.finish("k1", "old", "{}", ttl_s=-1)  # a TTL that has already run out
    assert await expire_idempotency(store.db) == 1
    remaining = await store.db.fetchall("SELECT key FROM idempotency")
    assert [r["key"] for r in remaining] == ["fresh"]
    # A claim whose process died before it finished can be claimed again once its lease ran out
    # (every claim first deletes what has expired).
    assert await repo.reserve("k1", "dead", "deploy_service", "h", lease_s=-1) is None
    assert await repo.reserve("k1", "dead", "deploy_service", "h", 60) is None
