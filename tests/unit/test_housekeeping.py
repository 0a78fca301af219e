"""The reconciler's housekeeping passes: audit and idempotency rows expire, build logs stay within each
tenant's cap, and tenant networks nothing uses are collected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.builds import BuildManager
from orchestrator.builds.logs import REMOVED_NOTE, cap_logs
from orchestrator.housekeeping import Housekeeping
from orchestrator.models import DatabaseSpec, Principal, ServiceSpec
from orchestrator.services import NetworkCollector
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store
from tests.fakes import FakeBackend

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _builds(settings: Settings, store: Store) -> BuildManager:
    return BuildManager(settings, store, builder=None)  # type: ignore[arg-type]  # logs only, no builds run


async def test_audit_and_idempotency_rows_expire_and_recent_ones_stay(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, audit_retention_days=30)
    tenant = await store.tenants.create("a", Quotas())
    ts = store.scoped(tenant.id)
    now = datetime.now(UTC)
    for age_days, action in ((40, "old_deploy"), (31, "old_delete"), (29, "recent_deploy")):
        await store.db.execute(
            "INSERT INTO audit_log (ts, tenant_id, key_id, action, target, outcome) VALUES (?, ?, 'k', ?, 'x', 'ok')",
            (_iso(now - timedelta(days=age_days)), tenant.id, action),
        )
    await ts.audit.record("k", "just_now", "x", "ok")
    assert await ts.idempotency.reserve("k", "gone", "deploy_service", "h", lease_s=60) is None
    assert await ts.idempotency.reserve("k", "kept", "deploy_service", "h", lease_s=60) is None
    await store.db.execute(
        "UPDATE idempotency SET expires_at = ? WHERE key = 'gone'", (_iso(now - timedelta(seconds=1)),)
    )

    counts = await Housekeeping(settings, store, _builds(settings, store)).expire_rows(now)

    assert counts == {"audit_expired": 2, "events_expired": 0, "idempotency_expired": 1}
    assert [r["action"] for r in await ts.audit.recent()] == ["just_now", "recent_deploy"]
    rows = await store.db.fetchall("SELECT key FROM idempotency")
    assert [r["key"] for r in rows] == ["kept"]


def _log(folder: Path, build_id: str, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{build_id}.log").write_bytes(b"x" * size)


def test_oldest_finished_logs_go_first_and_running_ones_stay(tmp_path: Path) -> None:
    for build_id, size in (("b1", 300), ("b2", 300), ("b3", 300), ("run", 500)):
        _log(tmp_path, build_id, size)
    # b1..b3 finished (oldest first); 'run' is running and not in the list.
    assert cap_logs(tmp_path, ["b1", "b2", "b3"], keep_bytes=900) == ["b1", "b2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b3.log", "run.log"]
    assert cap_logs(tmp_path, ["b3"], keep_bytes=900) == []
    assert cap_logs(tmp_path / "none", ["b3"], keep_bytes=0) == []


async def test_build_logs_stay_within_the_tenant_cap_with_room_for_one_more(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, build_log_max_bytes=MIB)
    tenant = await store.tenants.create("a", Quotas(max_build_log_bytes=3 * MIB))
    neighbour = await store.tenants.create("b", Quotas(max_build_log_bytes=3 * MIB))
    builds = _builds(settings, store)
    ids = []
    repo = store.scoped(tenant.id).builds
    for i in range(4):
        rec = await repo.insert(f"app{i}", "https://example.invalid/r.git", None, None, 60, "o")
        await repo.finish(rec.id, "succeeded")
        created = _iso(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i))  # one a minute, oldest first
        await store.db.execute("UPDATE builds SET created_at = ? WHERE id = ?", (created, rec.id))
        _log(builds.log_files.folder(tenant.id), rec.id, MIB)
        ids.append(rec.id)
    other = await store.scoped(neighbour.id).builds.insert("app", "https://example.invalid/r.git", None, None, 60, "o")
    _log(builds.log_files.folder(neighbour.id), other.id, MIB)

    counts = await Housekeeping(settings, store, builds).cap_build_logs()

    # 4 MiB of logs, 3 MiB allowed less 1 MiB of room: the two oldest go, the neighbour's stays.
    assert counts == {"build_logs_removed": 2}
    assert sorted(p.stem for p in builds.log_files.folder(tenant.id).iterdir()) == sorted(ids[2:])
    assert builds.log_files.path(neighbour.id, other.id).exists()
    p = Principal(tenant_id=tenant.id, tenant_name="a", role="member", key_id="k")

    async def silent(message: str, progress: float | None = None, total: float | None = None) -> None:
        return None

    gone = await builds.logs(p, ids[0], tail=10, offset=None, follow=False, report=silent)
    assert REMOVED_NOTE in gone.output


async def test_only_networks_of_tenants_without_services_or_databases_are_collected(store: Store) -> None:
    with_service = await store.tenants.create("svc", Quotas())
    with_database = await store.tenants.create("db", Quotas())
    idle = await store.tenants.create("idle", Quotas())
    spec = ServiceSpec(image="img:1", runtime="runsc", memory_mb=64, cpus=0.1)
    rec = await store.scoped(with_service.id).services.insert("web", spec)
    await store.scoped(with_service.id).services.update(rec.id, desired_state="deleted")  # not gone yet
    db_spec = DatabaseSpec(image="redis", runtime="runsc", memory_mb=64, cpus=0.1, volume="v", port=6379, username="u")
    dbs = store.scoped(with_database.id).databases
    async with store.db.transaction() as tx:
        await dbs.insert("cache", "redis", db_spec, ("p", "q"), dbs.new_id(), tx)
    names = [f"ah-net-{t.id}" for t in (with_service, with_database, idle)] + ["ah-eg-open"]
    engine = FakeBackend()
    for name in names:
        await engine.ensure_network(name, {})
    collector = NetworkCollector(store, engine)

    assert await collector.collect() == {"networks_removed": 1}
    assert sorted(engine.networks) == sorted(set(names) - {f"ah-net-{idle.id}"})
    assert not await collector.release(with_service.id)
    engine.available = False  # a use-case's release never fails the call that removed the workload
    assert not await collector.release(idle.id)
