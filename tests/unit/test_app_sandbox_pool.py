"""The warm pool of sandboxes over the in-memory engine: warmed on demand, claimed, refilled; the reaper."""

from __future__ import annotations

import asyncssh
import pytest

from orchestrator.backends.base import ExecResult, ExecSpec, WorkloadSpec
from orchestrator.errors import InvalidInput
from orchestrator.sandboxes.pool import POOL_TENANT, sandbox_spec
from orchestrator.settings import Settings
from tests.fakes import FakeBackend

from .site import Site


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    return app_settings.model_copy(update={"sandbox_pool_size": 1})


def test_a_sandbox_shape_is_kept_warm_once_asked_for(site: Site, fake_backend: FakeBackend) -> None:
    first = site.call("create_sandbox", name="one")
    assert first["status_code"] == 200 and first["status"] == "running", first

    def warm() -> set[str]:
        return {s.id for s in fake_backend.running("sandbox")} - {first["id"]}

    site.until(lambda: len(warm()) == 1, "the shape asked for has one warm container")
    pooled = warm()
    second = site.call("create_sandbox", name="two")
    assert second["id"] in pooled, second  # claimed from the pool
    site.until(lambda: len(warm() - {second["id"]}) == 1, "the pool refilled")
    # A warm container that died while it waited is discarded, and the sandbox made fresh.
    (dead,) = warm() - {second["id"]}
    fake_backend.crash(dead, 137)
    third = site.call("create_sandbox", name="three")
    assert third["status"] == "running" and third["id"] != dead, third
    for name in ("one", "two", "three"):
        assert site.call("delete_sandbox", sandbox=name, confirm=True)["status_code"] == 200


def test_a_sandbox_within_its_ttl_is_not_reaped(site: Site, fake_backend: FakeBackend) -> None:
    box = site.call("create_sandbox", name="short", ttl_s=60)
    assert box["status_code"] == 200, box
    assert site.run(site.platform.sandboxes.reap) == 0
    assert [b["name"] for b in site.call("list_sandboxes")["sandboxes"]] == ["short"]


def test_a_pooled_container_is_warmed_up_before_anyone_can_claim_it(site: Site, fake_backend: FakeBackend) -> None:
    """The warm-up runs once in each new pooled container, before it is ready; a container that cannot finish
    it is discarded, never handed to a tenant."""
    ran: list[tuple[str, list[str]]] = []
    failing = {"on": True}

    async def on_exec(w: WorkloadSpec, spec: ExecSpec) -> ExecResult | None:
        ran.append((w.id, spec.argv))
        if failing["on"]:
            return ExecResult(exit_code=None, stdout="", stderr="", truncated=False, timed_out=True, duration_ms=1)
        return None

    fake_backend.on_exec = on_exec
    first = site.call("create_sandbox", name="one")  # cold: warms the shape's pool
    assert first["status"] == "running" and not first["from_pool"], first
    site.until(lambda: len(ran) >= 2, "the pool tried to warm two containers")
    second = site.call("create_sandbox", name="two")
    assert not second["from_pool"], second
    failing["on"] = False
    site.until(lambda: len({s.id for s in fake_backend.running("sandbox")} - {first["id"], second["id"]}) == 1, "warm")
    (pooled,) = {s.id for s in fake_backend.running("sandbox")} - {first["id"], second["id"]}
    assert (pooled, ["/bin/sh", "-c", site.platform.settings.sandbox_pool_warmup]) in ran
    failed = {w for w, _ in ran} - {pooled}
    assert len(failed) >= 2 and not failed & {s.id for s in fake_backend.running()}, "failed ones were discarded"
    third = site.call("create_sandbox", name="three")
    assert third["id"] == pooled and third["from_pool"], third
    for name in ("one", "two", "three"):
        assert site.call("delete_sandbox", sandbox=name, confirm=True)["status_code"] == 200


def test_a_claim_holds_the_refill_back_only_while_its_shape_has_a_warm_container(
    site: Site, fake_backend: FakeBackend
) -> None:
    """After a claim that leaves a warm container, passes of the pool's loop go by without topping it up (the
    hold here is an hour); the claim that takes the last one has the pool refilled at once, hold or not."""
    pool = site.platform.sandboxes.pool
    pool.settings = pool.settings.model_copy(
        update={"sandbox_pool_size": 2, "sandbox_pool_refill_delay_s": 3600, "sandbox_reap_interval_s": 0.02}
    )
    passes = {"n": 0}
    refill = pool.refill

    async def counted_refill() -> int:
        passes["n"] += 1
        return await refill()

    pool.refill = counted_refill  # type: ignore[method-assign]

    async def ready() -> set[str]:
        return {r.workload_id for r in await pool.store.pool.all() if r.state == "ready"}

    async def ready_count(n: int, but: frozenset[str] = frozenset()) -> bool:
        return len(await ready() - but) == n

    first = site.call("create_sandbox", name="one")
    assert not first["from_pool"], first
    site.until(lambda: ready_count(2), "the shape asked for has two warm containers")
    pooled = site.run(ready)
    two = site.call("create_sandbox", name="two")
    assert two["from_pool"] and two["id"] in pooled, (two, pooled, site.run(ready))
    after_claim = passes["n"]
    site.until(lambda: passes["n"] >= after_claim + 5, "five passes of the pool's loop")
    assert site.run(ready) == pooled - {two["id"]}, "topped up while a warm container was left"
    three = site.call("create_sandbox", name="three")
    assert three["from_pool"] and {two["id"], three["id"]} == pooled, three
    site.until(lambda: ready_count(2, frozenset(pooled)), "the emptied pool refilled at once")
    for name in ("one", "two", "three"):
        assert site.call("delete_sandbox", sandbox=name, confirm=True)["status_code"] == 200


def test_a_pooled_container_s_first_exec_is_prepared_while_it_is_warm(site: Site, fake_backend: FakeBackend) -> None:
    """After its warm-up, a pooled container gets an exec started ahead of the first command (the warm-up does not
    use it); the claimer's first exec takes it. Where none could be prepared, the container is handed out all the
    same and its first exec runs through the engine."""
    site.call("create_sandbox", name="cold")  # warms the shape's pool
    site.until(lambda: len(fake_backend.prepared) == 1, "the warm container has a prepared exec")
    (pooled,) = fake_backend.prepared
    assert not fake_backend.prepared_used, "the warm-up took the prepared exec"
    fake_backend.prepare_fails = InvalidInput("workload is not running", "start it first")  # from the refill on
    warm = site.call("create_sandbox", name="warm")
    assert warm["id"] == pooled and warm["from_pool"], warm
    key = fake_backend.prepared[pooled]
    ran = site.call("exec", sandbox="warm", command=["echo", "hi"])
    assert ran["exit_code"] == 0 and "hi\n" in ran["stdout"], ran
    assert fake_backend.prepared_used == [(pooled, key)]

    async def one_ready() -> bool:
        return len([r for r in await site.platform.store.pool.all() if r.state == "ready"]) == 1

    site.until(one_ready, "the pool refilled, its new container ready though no exec was prepared in it")
    (unprepared,) = [r.workload_id for r in site.run(site.platform.store.pool.all)]
    third = site.call("create_sandbox", name="third")
    assert third["id"] == unprepared and third["from_pool"], third
    ran = site.call("exec", sandbox="third", command=["echo", "still"])
    assert ran["exit_code"] == 0 and "still\n" in ran["stdout"], ran
    assert fake_backend.prepared_used == [(pooled, key)]
    for name in ("cold", "warm", "third"):
        assert site.call("delete_sandbox", sandbox=name, confirm=True)["status_code"] == 200
    assert not fake_backend.prepared


def test_a_key_for_ssh_gives_up_the_exec_prepared_for_the_first_command(site: Site, fake_backend: FakeBackend) -> None:
    """Code run over SSH could take a waiting prepared exec's request and answer for it: a sandbox that gets a key
    has none left, and its first exec goes through the engine."""
    site.call("create_sandbox", name="cold")
    site.until(lambda: len(fake_backend.prepared) == 1, "the warm container has a prepared exec")
    (pooled,) = fake_backend.prepared
    fake_backend.prepare_fails = InvalidInput("workload is not running", "start it first")  # no refill prepared
    box = site.call("create_sandbox", name="box")
    assert box["id"] == pooled and pooled in fake_backend.prepared, box
    public = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    info = site.call("add_ssh_key", sandbox="box", public_key=public)
    assert info["target"] == "sandbox box", info
    assert pooled not in fake_backend.prepared
    ran = site.call("exec", sandbox="box", command=["echo", "hi"])
    assert ran["exit_code"] == 0 and fake_backend.prepared_used == [], ran
    for name in ("cold", "box"):
        assert site.call("delete_sandbox", sandbox=name, confirm=True)["status_code"] == 200


def test_a_claim_takes_a_container_this_process_prepared_before_an_older_one_it_did_not(
    site: Site, fake_backend: FakeBackend
) -> None:
    """Every process of the data dir fills the pool, and only the process that prepared a container's exec can use
    it (and none can once that process exited): a claim takes this process's own first, the oldest otherwise."""
    site.call("create_sandbox", name="one")
    site.until(lambda: len(fake_backend.prepared) == 1, "the warm container has a prepared exec")
    (mine,) = fake_backend.prepared
    (row,) = site.run(site.platform.store.pool.all)
    pool = site.platform.pool
    other = "sbx_warmedelsewhere"  # warmed by another process, earlier: its prepared exec is not this one's

    async def warmed_elsewhere() -> None:
        (shape,) = pool.configured()
        await fake_backend.ensure_workload(sandbox_spec(site.platform.settings, other, POOL_TENANT, shape))
        await site.platform.store.db.execute(
            "INSERT INTO sandbox_pool (workload_id, pool_key, state, created_at) VALUES (?, ?, 'ready', ?)",
            (other, row.pool_key, "2000-01-01T00:00:00.000+00:00"),
        )

    site.run(warmed_elsewhere)
    two = site.call("create_sandbox", name="two")
    assert (two["id"], two["from_pool"]) == (mine, True), two
    fake_backend.prepare_fails = InvalidInput("workload is not running", "start it first")  # a refill has none
    three = site.call("create_sandbox", name="three")  # none of this process's is ready: the oldest
    assert (three["id"], three["from_pool"]) == (other, True), three
