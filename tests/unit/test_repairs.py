"""Repairs that meet a bad record: the reconciler skips it and finishes its pass; an update whose
redeploy raises is rolled back to the previous spec and env."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestrator.backends.base import WorkloadSpec, WorkloadStatus
from orchestrator.errors import (
    AgentHostError,
    BackendUnavailable,
    BackupTargetUnavailable,
    InvalidInput,
    WorkloadFailed,
)
from orchestrator.models import Principal, ServiceRecord, ServiceSpec
from orchestrator.services import Reconciler, ServiceManager, UpdateRequest
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store, TenantStore
from tests.fakes import FakeBackend

pytestmark = pytest.mark.anyio


@pytest.fixture
def engine() -> FakeBackend:
    return FakeBackend(images={"img:1"}, runtimes={"runsc"})


async def _orphan(engine: FakeBackend) -> None:
    """A workload the platform has no record of."""
    spec = WorkloadSpec(
        id="svc_orphan", kind="service", tenant_id="t_x", image="img:1", memory_mb=64, cpus=0.1, runtime="runsc"
    )
    await engine.ensure_workload(spec)
    engine.created.clear()


@pytest.fixture
def services(store: Store, engine: FakeBackend, tmp_path: Path) -> ServiceManager:
    return ServiceManager(Settings(data_dir=tmp_path), store, engine)


async def _tenant(store: Store, name: str) -> TenantStore:
    return store.scoped((await store.tenants.create(name, Quotas())).id)


async def _running(ts: TenantStore, name: str, env: dict[str, str] | None = None) -> ServiceRecord:
    spec = ServiceSpec(image="img:1", runtime="runsc", memory_mb=64, cpus=0.1)
    rec = await ts.services.insert(name, spec)
    await ts.env.set_many(rec.id, env or {})
    await ts.services.update(rec.id, status="running")
    return await ts.services.get(rec.id)


async def test_a_record_whose_repair_raises_is_skipped_and_the_pass_goes_on(
    store: Store, services: ServiceManager, engine: FakeBackend
) -> None:
    first, second = await _tenant(store, "first"), await _tenant(store, "second")
    refused = await _running(first, "refused")  # made first: the pass meets it before the others
    crashing = await _running(first, "crashing")
    repaired = await _running(second, "repaired")
    engine.refuse[refused.id] = InvalidInput("the container cannot start: no such user")
    engine.refuse[crashing.id] = RuntimeError("a bug in a backend")
    await _orphan(engine)
    ran: list[str] = []

    async def backups_pass() -> dict[str, int]:
        raise BackupTargetUnavailable("the S3 endpoint is down")

    async def databases_pass() -> dict[str, int]:
        ran.append("databases")
        return {"databases_redeployed": 0}

    reconciler = Reconciler(store, services, 30, passes=[backups_pass, databases_pass])
    counts = await reconciler.reconcile_once()

    assert [s.id for s in engine.created] == [repaired.id]
    assert engine.removed == ["svc_orphan"]
    assert ran == ["databases"]
    assert counts["redeployed"] == 1 and counts["orphans_removed"] == 1
    assert counts["repairs_failed"] == 2 and counts["passes_failed"] == 1
    assert counts["databases_redeployed"] == 0
    # Its owner sees why the service is not coming back.
    assert "could not recreate it: the container cannot start" in (
        (await first.services.get("refused")).last_error or ""
    )


async def test_an_unreachable_engine_stops_the_pass(
    store: Store, services: ServiceManager, engine: FakeBackend
) -> None:
    ts = await _tenant(store, "t")
    rec = await _running(ts, "web")
    engine.refuse[rec.id] = BackendUnavailable("the engine is unreachable")
    await _orphan(engine)
    with pytest.raises(BackendUnavailable):
        await Reconciler(store, services, 30).reconcile_once()
    assert engine.removed == []


async def test_run_counts_the_passes_it_finished_not_those_the_engine_stopped(
    store: Store, services: ServiceManager, engine: FakeBackend
) -> None:
    reconciler = Reconciler(store, services, 0)
    refused: list[int] = []  # one entry per pass that found the engine away
    listing = engine.list_workloads

    async def list_workloads(labels: dict[str, str]) -> list[WorkloadStatus]:
        if not engine.available:
            refused.append(reconciler.passes_finished)
        return await listing(labels)

    engine.list_workloads = list_workloads  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reconciler.run)
        with anyio.fail_after(10):
            while reconciler.passes_finished < 2:
                await anyio.sleep(0.01)
        engine.available = False
        with anyio.fail_after(10):
            while len(refused) < 3:
                await anyio.sleep(0.01)
        # The pass under way when the engine went away may have listed before; none after it finished.
        assert refused[0] == refused[-1] == reconciler.passes_finished
        engine.available = True
        with anyio.fail_after(10):
            while reconciler.passes_finished < refused[-1] + 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_an_update_whose_redeploy_raises_is_rolled_back(
    store: Store, services: ServiceManager, engine: FakeBackend
) -> None:
    ts = await _tenant(store, "t")
    rec = await _running(ts, "web", {"GREETING": "v1", "KEEP": "k"})
    await engine.ensure_workload(await services.workload_spec(ts, rec))
    p = Principal(tenant_id=ts.tenant_id, tenant_name="t", role="member", key_id="k")
    engine.refuse["/no/such/binary"] = InvalidInput("the container cannot start: /no/such/binary: no such file")

    change = UpdateRequest(command=["/no/such/binary"], env={"GREETING": "v2"}, unset_env=["KEEP"], wait=False)
    with pytest.raises(WorkloadFailed) as err:
        await services.update(p, "web", change)
    assert "rolled back (service is running on its previous version)" in err.value.message
    assert "[invalid_input] the container cannot start: /no/such/binary" in err.value.message
    after = await ts.services.get("web")
    assert after.spec == rec.spec and after.status == "running" and after.desired_state == "running"
    assert await ts.env.get_all(rec.id) == {"GREETING": "v1", "KEEP": "k"}
    running = engine.workloads[rec.id].spec
    assert running.command is None and running.env["GREETING"] == "v1"


async def test_an_update_whose_rollback_fails_too_leaves_the_previous_spec_recorded(
    store: Store, services: ServiceManager, engine: FakeBackend
) -> None:
    ts = await _tenant(store, "t")
    rec = await _running(ts, "web")
    p = Principal(tenant_id=ts.tenant_id, tenant_name="t", role="member", key_id="k")
    engine.refuse[rec.id] = AgentHostError("the engine fell over")

    with pytest.raises(WorkloadFailed) as err:
        await services.update(p, "web", UpdateRequest(memory_mb=128))
    assert "did not start again either" in err.value.message and "the engine fell over" in err.value.message
    # The previous spec is what the reconciler recreates once the engine is back, never the new one.
    assert (await ts.services.get("web")).spec == rec.spec


async def test_a_pass_lists_the_engine_once_and_asks_again_only_before_it_acts(
    store: Store, services: ServiceManager, engine: FakeBackend
) -> None:
    ts = await _tenant(store, "t")
    recs = [await _running(ts, f"web{i}") for i in range(3)]
    reconciler = Reconciler(store, services, 30)
    assert (await reconciler.reconcile_once())["redeployed"] == 3  # no workloads yet: made
    for rec in recs:
        await ts.services.update(rec.id, status="running")
    asked: list[str] = []
    status, listing = engine.workload_status, engine.list_workloads

    async def workload_status(workload_id: str) -> WorkloadStatus:
        asked.append(workload_id)
        return await status(workload_id)

    engine.workload_status = workload_status  # type: ignore[method-assign]
    assert (await reconciler.reconcile_once())["redeployed"] == 0
    assert asked == []  # every one running as listed: not asked one by one
    # Listed as exited, started again before its repair: asked afresh, so not taken for a crash.
    engine.crash(recs[0].id)

    async def started_after_the_listing(labels: dict[str, str]) -> list[WorkloadStatus]:
        listed = await listing(labels)
        if not asked:
            await engine.start_workload(recs[0].id)
        return listed

    engine.list_workloads = started_after_the_listing  # type: ignore[method-assign]
    counts = await reconciler.reconcile_once()
    assert asked == [recs[0].id] and counts["failed"] == 0
    assert (await ts.services.get(recs[0].id)).status == "running"
