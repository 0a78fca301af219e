"""Revisions over the in-memory engine: numbering, causes, the cap, failed changes, encryption at rest, and
rollback_service's checks (image policy, presence, digest) and its undo."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import AgentHostError, ImageNotAllowed, ImageNotFound, InvalidInput, NotFound, WorkloadFailed
from orchestrator.models import Principal, ServiceSpec
from orchestrator.progress import silent
from orchestrator.services import (
    DeployRequest,
    RevisionList,
    RevisionLog,
    ServiceManager,
    ServiceRevisions,
    UpdateRequest,
)
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store
from tests.fakes import FakeBackend

pytestmark = pytest.mark.anyio

SECRET = "hunter2-revision-secret"


@pytest.fixture
def engine(listener: int) -> FakeBackend:
    fake = FakeBackend(images={"img:1", "img:2"}, runtimes={"runsc"})
    fake.publish_port = listener  # services answer there, so waits end when they come up
    return fake


@pytest.fixture
def digests() -> dict[str, str]:
    """What the engine holds under each reference, as its image id."""
    return {"img:1": "sha256:one", "img:2": "sha256:two"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, image_allow=["img:*"], service_revisions_kept=3)


@pytest.fixture
def services(store: Store, engine: FakeBackend, settings: Settings, digests: dict[str, str]) -> ServiceManager:
    async def digest_of(image: str) -> str | None:
        return digests.get(image)

    log = RevisionLog(store.db, settings.service_revisions_kept, digest_of)
    return ServiceManager(settings, store, engine, revisions=log)


@pytest.fixture
def revisions(services: ServiceManager) -> ServiceRevisions:
    return ServiceRevisions(services)


async def _member(store: Store, name: str = "acme") -> Principal:
    tenant = await store.tenants.create(name, Quotas())
    return Principal(tenant_id=tenant.id, tenant_name=name, role="member", key_id="k")


async def _deploy(services: ServiceManager, p: Principal, **env: str) -> str:
    svc = await services.deploy(p, DeployRequest(name="web", image="img:1", port=8000, env=env, wait=False))
    return svc.id


def _column(listing: RevisionList, field: str) -> list[object]:
    return [getattr(r, field) for r in listing.revisions]


async def _stored(store: Store) -> list[tuple[int, bytes]]:
    rows = await store.db.fetchall("SELECT number, env FROM service_revisions ORDER BY number")
    return [(r["number"], r["env"]) for r in rows]


async def test_each_change_is_a_numbered_revision_newest_first_and_the_newest_live(
    store: Store, services: ServiceManager, revisions: ServiceRevisions
) -> None:
    p = await _member(store)
    await _deploy(services, p, A=SECRET)
    await services.set_env(p, "web", {"B": "b-value"}, False, silent)
    await services.update(p, "web", UpdateRequest(image="img:2", memory_mb=128, wait=False))
    listing = await revisions.list(p, "web")
    assert _column(listing, "number") == [3, 2, 1]
    assert _column(listing, "cause") == ["update: image, memory_mb", "set_env: B", "deploy"]
    assert _column(listing, "live") == [True, False, False]
    assert _column(listing, "failed") == [False, False, False]
    assert _column(listing, "image") == ["img:2", "img:1", "img:1"]
    assert _column(listing, "digest") == ["sha256:two", "sha256:one", "sha256:one"]
    assert SECRET not in listing.model_dump_json() and "b-value" not in listing.model_dump_json()


async def test_past_the_cap_the_oldest_revisions_are_deleted(
    store: Store, services: ServiceManager, revisions: ServiceRevisions
) -> None:
    p = await _member(store)
    await _deploy(services, p)
    for n in range(4):
        await services.set_env(p, "web", {"N": str(n)}, False, silent)
    assert _column(await revisions.list(p, "web"), "number") == [5, 4, 3]
    assert [n for n, _ in await _stored(store)] == [3, 4, 5]


async def test_a_failed_update_is_kept_marked_failed_and_the_one_before_stays_live(
    store: Store, services: ServiceManager, revisions: ServiceRevisions, engine: FakeBackend
) -> None:
    p = await _member(store)
    service_id = await _deploy(services, p, A="1")
    engine.refuse["/no/such/binary"] = InvalidInput("the container cannot start: /no/such/binary")
    for _ in range(3):  # more failures than the cap: the live revision is never the one deleted
        with pytest.raises(WorkloadFailed) as err:
            await services.update(p, "web", UpdateRequest(command=["/no/such/binary"], env={"A": "2"}, wait=False))
        assert "rolled back" in err.value.message
    listing = await revisions.list(p, "web")
    assert _column(listing, "number") == [4, 3, 2, 1]
    assert _column(listing, "failed") == [True, True, True, False]
    assert _column(listing, "live") == [False, False, False, True]
    assert engine.workloads[service_id].spec.env == {"A": "1"}
    await services.set_env(p, "web", {"B": "2"}, False, silent)
    listing = await revisions.list(p, "web")
    assert (_column(listing, "number"), _column(listing, "live")) == ([5, 4, 3, 1], [True, False, False, False])


async def test_env_is_encrypted_at_rest_bound_to_its_revision_and_versioned_by_a_keyed_hash(
    store: Store, services: ServiceManager, revisions: ServiceRevisions
) -> None:
    p = await _member(store)
    service_id = await _deploy(services, p, TOKEN=SECRET)
    await services.set_env(p, "web", {"OTHER": "x"}, False, silent)
    stored = await _stored(store)
    assert len(stored) == 2 and all(SECRET.encode() not in blob for _, blob in stored)
    ts = store.scoped(p.tenant_id)
    _, env = await ts.revisions.get(service_id, "web", 1)
    assert env == {"TOKEN": SECRET}
    # A blob moved to another revision fails its integrity check rather than giving that revision its env.
    await store.db.execute("UPDATE service_revisions SET env = ? WHERE number = 2", (stored[0][1],))
    with pytest.raises(AgentHostError) as err:
        await ts.revisions.get(service_id, "web", 2)
    assert err.value.code == "internal" and "integrity" in err.value.message
    # The version is a hash under the tenant's key: another tenant's equal env has another version.
    other = await _member(store, "other")
    await services.deploy(other, DeployRequest(name="web", image="img:1", env={"TOKEN": SECRET}, wait=False))
    mine, theirs = (await revisions.list(p, "web")).revisions[-1], (await revisions.list(other, "web")).revisions[0]
    assert mine.env_version != theirs.env_version and SECRET not in mine.env_version


async def test_rollback_restores_image_config_and_env_as_a_new_revision(
    store: Store, services: ServiceManager, revisions: ServiceRevisions, engine: FakeBackend
) -> None:
    p = await _member(store)
    service_id = await _deploy(services, p, GREETING="one")
    first = engine.workloads[service_id].spec
    await services.update(
        p, "web", UpdateRequest(image="img:2", memory_mb=128, env={"GREETING": "two", "NEW": "x"}, wait=False)
    )
    done = await revisions.rollback(p, "web", 1, wait=False)
    assert (done.service, done.revision) == ("web", 3)
    running = engine.workloads[service_id].spec
    assert (running.image, running.memory_mb, running.ports, running.env) == (
        "img:1",
        first.memory_mb,
        [8000],
        {"GREETING": "one"},
    )
    listing = await revisions.list(p, "web")
    assert _column(listing, "cause")[0] == "rollback of 1" and _column(listing, "live") == [True, False, False]
    assert listing.revisions[0].env_version == listing.revisions[2].env_version != listing.revisions[1].env_version
    assert listing.revisions[0].digest == "sha256:one"


async def test_rollback_refuses_a_missing_or_live_revision_and_another_tenants_service(
    store: Store, services: ServiceManager, revisions: ServiceRevisions
) -> None:
    p = await _member(store)
    await _deploy(services, p)
    with pytest.raises(NotFound) as missing:
        await revisions.rollback(p, "web", 7)
    assert missing.value.code == "not_found" and "no revision 7" in missing.value.message
    with pytest.raises(InvalidInput) as live:
        await revisions.rollback(p, "web", 1)
    assert "live" in live.value.message
    other = await _member(store, "other")
    for attempt in (revisions.list(other, "web"), revisions.rollback(other, "web", 1)):
        with pytest.raises(NotFound) as err:
            await attempt
        assert err.value.code == "not_found"


async def test_rollback_refuses_an_image_no_longer_allowed_present_or_the_same(
    store: Store,
    services: ServiceManager,
    revisions: ServiceRevisions,
    engine: FakeBackend,
    settings: Settings,
    digests: dict[str, str],
) -> None:
    p = await _member(store)
    await _deploy(services, p)
    await services.update(p, "web", UpdateRequest(image="img:2", wait=False))
    digests["img:1"] = "sha256:retagged"
    with pytest.raises(ImageNotFound) as moved:
        await revisions.rollback(p, "web", 1)
    assert "sha256:one" in moved.value.message and "sha256:retagged" in moved.value.message
    engine.images.discard("img:1")
    with pytest.raises(ImageNotFound) as gone:
        await revisions.rollback(p, "web", 1)
    assert "no longer on this host" in gone.value.message
    settings.image_allow = ["img:2"]
    with pytest.raises(ImageNotAllowed) as refused:
        await revisions.rollback(p, "web", 1)
    assert refused.value.message.startswith("revision 1 cannot come back")
    assert _column(await revisions.list(p, "web"), "number") == [2, 1]  # nothing recorded


async def test_a_rollback_that_does_not_come_up_is_undone_and_kept_as_failed(
    store: Store, services: ServiceManager, revisions: ServiceRevisions, engine: FakeBackend
) -> None:
    p = await _member(store)
    service_id = await _deploy(services, p)
    await services.update(p, "web", UpdateRequest(image="img:2", wait=False))
    engine.refuse["img:1"] = InvalidInput("the container cannot start")
    with pytest.raises(WorkloadFailed) as err:
        await revisions.rollback(p, "web", 1, wait=False)
    assert "rollback to revision 1 of web rolled back" in err.value.message
    listing = await revisions.list(p, "web")
    assert _column(listing, "failed") == [True, False, False] and _column(listing, "live") == [False, True, False]
    assert engine.workloads[service_id].spec.image == "img:2"


async def test_a_rollback_that_crashes_at_start_is_undone_like_an_update(
    store: Store, services: ServiceManager, revisions: ServiceRevisions, engine: FakeBackend
) -> None:
    p = await _member(store)
    service_id = await _deploy(services, p)
    await services.update(p, "web", UpdateRequest(image="img:2", wait=False))
    engine.exit_at_start["img:1"] = 3
    with pytest.raises(WorkloadFailed) as err:
        await revisions.rollback(p, "web", 1, wait=True)
    assert "rolled back (service is running on its previous version)" in err.value.message
    assert "exited with code 3" in err.value.message
    assert engine.workloads[service_id].spec.image == "img:2" and engine.workloads[service_id].state == "running"
    assert _column(await revisions.list(p, "web"), "live") == [False, True, False]


async def test_a_deploy_the_engine_refuses_leaves_no_revision(
    store: Store, services: ServiceManager, revisions: ServiceRevisions, engine: FakeBackend
) -> None:
    p = await _member(store)
    engine.refuse["img:1"] = InvalidInput("the container cannot start")
    with pytest.raises(InvalidInput):
        await _deploy(services, p)
    assert await _stored(store) == []
    del engine.refuse["img:1"]
    await _deploy(services, p)
    assert _column(await revisions.list(p, "web"), "number") == [1]


async def test_deleting_a_service_deletes_its_revisions(
    store: Store, services: ServiceManager, revisions: ServiceRevisions
) -> None:
    p = await _member(store)
    await _deploy(services, p, A="1")
    await services.set_env(p, "web", {"B": "2"}, False, silent)
    await services.delete(p, "web")
    assert await _stored(store) == []


async def test_a_service_recorded_before_revisions_gets_its_state_recorded_first(
    store: Store, services: ServiceManager, revisions: ServiceRevisions, engine: FakeBackend
) -> None:
    p = await _member(store)
    ts = store.scoped(p.tenant_id)
    rec = await ts.services.insert("web", ServiceSpec(image="img:1", runtime="runsc", memory_mb=64, cpus=0.1))
    await ts.env.set_many(rec.id, {"OLD": "o"})
    await services.set_env(p, "web", {"NEW": "n"}, False, silent)
    assert _column(await revisions.list(p, "web"), "cause") == ["set_env: NEW", "existing"]
    await revisions.rollback(p, "web", 1, wait=False)
    assert await ts.env.get_all(rec.id) == {"OLD": "o"}
