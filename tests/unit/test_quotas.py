"""Quota checks, the transaction that makes them race-free (also between two connections, as two processes
have), and the caps on what a tenant piles up: volumes, backups, build images, API keys."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestrator.builds import BuildManager
from orchestrator.errors import QuotaExceeded
from orchestrator.models import ServiceSpec, VolumeMount
from orchestrator.quotas import Workloads, check_backups, check_count, check_volumes, check_workload, workloads
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store, Tx
from orchestrator.store.sandboxes import new_sandbox_id

pytestmark = pytest.mark.anyio


def _spec(memory_mb: int = 256, cpus: float = 0.5) -> ServiceSpec:
    return ServiceSpec(image="img:1", runtime="runsc", memory_mb=memory_mb, cpus=cpus)


async def _sandbox(store: Store, tenant_id: str, tx: Tx, memory_mb: int, name: str | None = None) -> None:
    sandbox_id = new_sandbox_id()
    await store.scoped(tenant_id).sandboxes.insert(
        tx,
        sandbox_id=sandbox_id,
        name=name or sandbox_id.replace("_", "-"),
        image="img:1",
        network="none",
        memory_mb=memory_mb,
        cpus=1.0,
        status="running",
        from_pool=False,
        expires_at="2999-01-01T00:00:00.000+00:00",
    )


def test_a_workload_past_any_quota_is_refused_with_the_numbers() -> None:
    quotas = Quotas(max_services=2, max_memory_mb=1024, max_cpus=2.0, max_service_memory_mb=512)
    held = Workloads(services=1, databases=1, sandboxes=1, memory_mb=768, cpus=1.5)
    check_workload(quotas, held, "service", 256, 0.5)
    with pytest.raises(QuotaExceeded, match="2 of 2 services"):
        check_workload(quotas, Workloads(services=2), "service", 64, 0.1)
    with pytest.raises(QuotaExceeded, match="would reach 1024 MiB .* above the quota of 1023 MiB"):
        check_workload(quotas.model_copy(update={"max_memory_mb": 1023}), held, "sandbox", 256, 0.1)
    with pytest.raises(QuotaExceeded, match="cpus .* would reach 2.5"):
        check_workload(quotas, held, "database", 64, 1.0)
    with pytest.raises(QuotaExceeded, match="memory_mb 600 is above the limit of one sandbox, 512"):
        check_workload(quotas, Workloads(), "sandbox", 600, 0.1)
    # A changed service gives back its old limits first, and is no new service.
    check_workload(quotas, Workloads(services=2, memory_mb=1024, cpus=2.0), "service", 512, 1.0, (512, 1.0))


def test_volumes_count_what_exists_and_only_new_ones_need_room() -> None:
    quotas = Quotas(max_volumes=2)
    check_volumes(quotas, {"a", "b"}, {"a", "b"})
    check_volumes(quotas, {"a"}, {"a", "b"})
    with pytest.raises(QuotaExceeded, match="2 of 2 volumes, and this would add 1 \\(c\\)"):
        check_volumes(quotas, {"a", "b"}, {"a", "c"})


def test_backups_stop_at_the_count_and_at_the_bytes_of_complete_ones() -> None:
    quotas = Quotas(max_backups=3, max_backup_bytes=1000)
    check_backups(quotas, 2, 999)
    with pytest.raises(QuotaExceeded, match="3 of 3 backups"):
        check_backups(quotas, 3, 0)
    with pytest.raises(QuotaExceeded, match="1000 bytes, at or above the quota of 1000 bytes"):
        check_backups(quotas, 0, 1000)
    with pytest.raises(QuotaExceeded, match="5 of 5 API keys"):
        check_count(5, 5, "API keys")


async def test_sandboxes_count_toward_the_tenant_memory_and_cpus(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    ts = store.scoped(tenant.id)
    await ts.services.insert("web", _spec(512, 1.0))
    async with store.db.transaction() as tx:
        await _sandbox(store, tenant.id, tx, 256)
        await _sandbox(store, tenant.id, tx, 128)
    held = await workloads(ts)
    assert held == Workloads(services=1, databases=0, sandboxes=2, memory_mb=896, cpus=3.0)


async def _race(stores: list[Store], tenant_id: str, racers: int) -> tuple[int, int]:
    """``racers`` deploys at once, spread over the stores; (recorded, refused)."""
    results = {"ok": 0, "refused": 0}

    async def deploy(i: int) -> None:
        store = stores[i % len(stores)]
        ts = store.scoped(tenant_id)
        try:
            async with store.db.transaction() as tx:
                quotas = (await store.tenants.get(tenant_id, tx)).quotas
                check_workload(quotas, await workloads(ts, tx), "service", 64, 0.1)
                await anyio.sleep(0)  # let every other racer run up to this point
                await ts.services.insert(f"s{i}", _spec(64, 0.1), tx)
            results["ok"] += 1
        except QuotaExceeded:
            results["refused"] += 1

    async with anyio.create_task_group() as tg:
        for i in range(racers):
            tg.start_soon(deploy, i)
    return results["ok"], results["refused"]


async def test_check_and_insert_in_one_transaction_cannot_be_raced(store: Store, tmp_path: Path) -> None:
    tenant = await store.tenants.create("a", Quotas(max_services=3))
    # A second connection to the same file stands for another process sharing the data dir.
    other = await Store.open(tmp_path / "agenthost.db", store.secrets)
    try:
        assert await _race([store, other], tenant.id, 25) == (3, 22)
    finally:
        await other.close()
    assert len(await store.scoped(tenant.id).services.all()) == 3


async def test_backup_totals_count_every_status_and_the_bytes_of_complete_ones(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    repo = store.scoped(tenant.id).backups
    done = await repo.insert("volume", "files", None, None, "local", "owner", {})
    await repo.finish(done.id, "complete", snapshot_id="s1", size_bytes=700)
    failed = await repo.insert("volume", "files", None, None, "local", "owner", {})
    await repo.finish(failed.id, "failed", size_bytes=5000, error="boom")
    await repo.insert("volume", "files", None, None, "local", "owner", {})
    assert await repo.totals() == (3, 700)
    other = await store.tenants.create("b", Quotas())
    assert await store.scoped(other.id).backups.totals() == (0, 0)


async def test_service_volumes_are_known_from_the_store_before_the_engine_has_them(store: Store) -> None:
    tenant = await store.tenants.create("a", Quotas())
    ts = store.scoped(tenant.id)
    volumes = [VolumeMount(name="data", path="/d"), VolumeMount(name="logs", path="/l")]
    await ts.services.insert("web", _spec().model_copy(update={"volumes": volumes}))
    assert await ts.services.volume_names() == {"data", "logs"}
    assert await ts.services.any() and not await ts.databases.any()


class Images:
    """The builder's engine, as far as pruning sees it."""

    def __init__(self, tags: set[str]) -> None:
        self.tags = tags

    async def image_exists(self, image: str) -> bool:
        return image in self.tags

    async def remove_image(self, tag: str) -> None:
        self.tags.discard(tag)


async def test_build_images_are_capped_across_names_and_deployed_ones_stay(store: Store, tmp_path: Path) -> None:
    tenant = await store.tenants.create("a", Quotas(max_build_images=3))
    ts = store.scoped(tenant.id)
    images = Images(set())
    for i in range(6):  # six names, one build each: the per-name limit never applies
        rec = await ts.builds.insert(f"app{i}", "https://example.invalid/r.git", None, None, 60, "o")
        await ts.builds.finish(rec.id, "succeeded", image=f"reg/{tenant.id}/app{i}:{rec.id}")
        await store.db.execute("UPDATE builds SET created_at = ? WHERE id = ?", (f"2026-01-01T00:0{i}:00", rec.id))
        images.tags.add(f"reg/{tenant.id}/app{i}:{rec.id}")
    oldest = min(images.tags, key=lambda t: t.split("/")[2])
    await ts.services.insert("web", ServiceSpec(image=oldest, runtime="runsc", memory_mb=64, cpus=0.1))
    builds = BuildManager(Settings(data_dir=tmp_path), store, builder=images)  # type: ignore[arg-type]

    removed = await builds.runner.prune_images(ts, "app5")

    assert sorted(t.split("/")[2].split(":")[0] for t in removed) == ["app1", "app2"]
    assert sorted(t.split("/")[2].split(":")[0] for t in images.tags) == ["app0", "app3", "app4", "app5"]
