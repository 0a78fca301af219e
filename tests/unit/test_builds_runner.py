"""The build runner's logic with an in-memory builder: queueing, cancel, engine faults, recovery.

The real engine is exercised by tests/e2e/test_builds.py; here the builder is a double, so the edges
(an engine that is away, a bug in one build, a process that died mid-build) can be provoked at will.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from orchestrator.backends.building import Builder
from orchestrator.builds import Build, BuildManager, BuildRequest
from orchestrator.errors import BackendUnavailable, QuotaExceeded
from orchestrator.models import Principal
from orchestrator.secrets import SecretBox
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store
from orchestrator.store.builds import BuildRepo
from tests.fakes import FakeBuilder

from ..gitrepos import make_repo

pytestmark = pytest.mark.anyio


async def _quiet(message: str, progress: float | None = None, total: float | None = None) -> None:
    return None


@asynccontextmanager
async def runner(repo_dir: Path, **settings: object) -> AsyncIterator[tuple[BuildManager, FakeBuilder, Principal]]:
    conf = Settings(data_dir=repo_dir / "data", allow_local_git=True, build_dir=repo_dir / "builds", **settings)  # type: ignore[arg-type]
    store = await Store.open(conf.db_path, SecretBox(b"k" * 32))
    builder = FakeBuilder()
    assert isinstance(builder, Builder)
    manager = BuildManager(conf, store, builder)
    tenant = await store.tenants.create("t", Quotas(max_concurrent_builds=1))
    p = Principal(tenant_id=tenant.id, tenant_name="t", role="member", key_id="k")
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            yield manager, builder, p
            tg.cancel_scope.cancel()
    finally:
        await store.close()


@pytest.fixture
def repo(repo_dir: Path) -> Path:
    return make_repo(repo_dir / "site", {"index.html": "hi"})


async def _start(m: BuildManager, p: Principal, repo: Path, wait: bool = False) -> Build:
    return await m.start(p, BuildRequest(git_url=str(repo), wait=wait, wait_timeout_s=30), _quiet)


async def _until_done(m: BuildManager, p: Principal, build_id: str) -> Build:
    with anyio.fail_after(30):
        while (b := await m.get(p, build_id)).status in ("queued", "running"):
            await anyio.sleep(0.05)
    return b


async def test_an_engine_fault_or_a_bug_fails_that_build_only(repo_dir: Path, repo: Path) -> None:
    async def engine_away(tag: str) -> None:
        raise BackendUnavailable("docker engine unreachable")

    async def bug(tag: str) -> None:
        raise RuntimeError("oops")

    async with runner(repo_dir) as (m, builder, p):
        builder.steps = [engine_away, bug]
        first = await _until_done(m, p, (await _start(m, p, repo)).id)
        assert first.status == "failed" and "unreachable" in (first.error or "")
        second = await _until_done(m, p, (await _start(m, p, repo)).id)
        assert second.status == "failed" and "unexpectedly (RuntimeError)" in (second.error or "")
        assert f"layer-{second.id}" in builder.removed_layers
        third = await _start(m, p, repo, wait=True)
        assert third.status == "succeeded", third
        assert third.recipe == "static" and third.port == 8080
        assert not (repo_dir / "builds" / third.id).exists()


async def test_queue_per_tenant_and_cancel(repo_dir: Path, repo: Path) -> None:
    gate = anyio.Event()
    entered: list[str] = []
    cancelled: list[str] = []

    async def blocked(tag: str) -> None:
        entered.append(tag)
        try:
            await gate.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(tag)
            raise

    async with runner(repo_dir) as (m, builder, p):
        builder.steps = [blocked, blocked]
        one = await _start(m, p, repo)
        two = await _start(m, p, repo)
        three = await _start(m, p, repo)
        with anyio.fail_after(10):
            while not entered:  # the first build is in the engine's hands
                await anyio.sleep(0.02)
        assert (await m.get(p, one.id)).status == "running"
        got = await m.get(p, three.id)
        assert (got.status, got.queue_position) == ("queued", 1)
        assert (await m.cancel(p, two.id)).status == "cancelled"
        assert (await m.get(p, three.id)).queue_position == 0
        stopped = await m.cancel(p, one.id)
        assert stopped.status == "cancelled" and stopped.error == "cancelled by cancel_build"
        assert len(cancelled) == 1 and cancelled[0].endswith(one.id)
        assert f"layer-{one.id}" in builder.removed_layers
        gate.set()
        assert (await _until_done(m, p, three.id)).status == "succeeded"
        assert (await m.cancel(p, three.id)).status == "succeeded"  # finished: left as it is


async def test_attack_a_cancel_racing_the_start_of_its_build_answers_once_the_build_has_stopped(
    repo_dir: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two server processes on one data dir. A build waits in line in the first; cancel_build reaches the
    second and reads it queued, and just then the first starts it. The cancel must not record the build
    cancelled (its place in the queue free) while the engine still builds it: it answers once the build's
    own runner has stopped it."""
    first_done = anyio.Event()
    entered: list[str] = []
    stopped: list[str] = []

    async def first(tag: str) -> None:
        await first_done.wait()

    async def second(tag: str) -> None:
        entered.append(tag)
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            stopped.append(tag)
            raise

    async with runner(repo_dir) as (m, builder, p):
        other_store = await Store.open(m.settings.db_path, SecretBox(b"k" * 32))
        other = BuildManager(m.settings, other_store, FakeBuilder())
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(other.run)
                builder.steps = [first, second]
                await _start(m, p, repo)
                queued = await _start(m, p, repo)
                assert (await m.get(p, queued.id)).status == "queued"
                update = BuildRepo.update

                async def started_meanwhile(self: BuildRepo, build_id: str, **values: object) -> None:
                    if build_id == queued.id and values.get("cancel_requested"):
                        first_done.set()  # the first process starts the queued build between the read and the cancel
                        with anyio.fail_after(10):
                            while not entered:
                                await anyio.sleep(0.02)
                    await update(self, build_id, **values)

                monkeypatch.setattr(BuildRepo, "update", started_meanwhile)
                answer = await other.cancel(p, queued.id)
                assert answer.status == "cancelled", answer
                assert stopped == entered, "cancel_build answered while the build still ran"
                tg.cancel_scope.cancel()
        finally:
            await other_store.close()


async def test_queue_limit(repo_dir: Path, repo: Path) -> None:
    gate = anyio.Event()

    async def blocked(tag: str) -> None:
        await gate.wait()

    async with runner(repo_dir, build_queue_limit=2) as (m, builder, p):
        builder.steps = [blocked]
        await _start(m, p, repo)
        await _start(m, p, repo)
        with pytest.raises(QuotaExceeded, match="2 builds queued or running") as err:
            await _start(m, p, repo)
        assert "cancel_build" in err.value.hint
        gate.set()


async def test_builds_of_a_dead_process_are_failed_and_cleaned(repo_dir: Path, repo: Path) -> None:
    async with runner(repo_dir) as (m, builder, p):
        ts = m.store.scoped(p.tenant_id)
        dead = await ts.builds.insert("site", f"file://{repo}", None, None, 60, owner="gone-host:1:1")
        await ts.builds.try_start(dead.id, 1, 1)
        await ts.builds.set_leftovers(dead.id, ["layer-a", "layer-b"])
        # Same host, a pid that is not running: failed at once, when someone looks.
        ghost = await ts.builds.insert(
            "site", f"file://{repo}", None, None, 60, owner=f"{m.runner.owner.split(':')[0]}:0:0"
        )
        got = await m.get(p, ghost.id)
        assert got.status == "failed" and "interrupted" in (got.error or "")
        # Another host: only once its heartbeat is stale.
        assert (await m.get(p, dead.id)).status == "running"
        await m.store.db.execute(
            "UPDATE builds SET heartbeat_at = '2000-01-01T00:00:00.000+00:00' WHERE id = ?", [dead.id]
        )
        assert await m.runner.recover() == 1
        got = await m.get(p, dead.id)
        assert got.status == "failed" and "interrupted" in (got.error or "")
        assert builder.removed_layers == ["layer-a", "layer-b"]
        assert (await ts.builds.get(dead.id)).leftovers == []
