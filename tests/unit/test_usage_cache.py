"""whoami's volume count and build log bytes are kept per tenant (orchestrator/usage.py): a tenant's own
mutating calls drop them at once, other changes show within usage_cache_ttl_s, and one tenant's figures are
never another's."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.models import Principal
from orchestrator.settings import Settings
from orchestrator.status import Status
from orchestrator.usage import HeldFigures, UsageCache
from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    # Long enough that nothing in a test expires by the wall clock; the TTL tests move their own clock.
    return app_settings.model_copy(update={"usage_cache_ttl_s": 3600.0})


def _listings(fake: FakeBackend) -> list[str]:
    """The tenants whose volumes the engine was asked for, in order."""
    asked: list[str] = []
    listing = fake.list_volumes

    async def counting(labels: dict[str, str]) -> list[str]:
        asked.append(next(iter(labels.values()), ""))
        return await listing(labels)

    fake.list_volumes = counting  # type: ignore[method-assign]
    return asked


def _usage(site: Site, key: str | None = None) -> dict[str, int]:
    who = site.call("whoami", key=key)
    assert who["status_code"] == 200, who
    usage: dict[str, int] = who["usage"]
    return usage


def _deploy(site: Site, name: str, volume: str, key: str | None = None) -> None:
    made = site.call(
        "deploy_service", key=key, name=name, image=APP_IMAGE, volumes=[{"name": volume, "path": "/data"}], wait=False
    )
    assert made["status_code"] == 200, made


def test_a_deploy_with_a_new_volume_and_a_delete_show_in_the_next_whoami(site: Site, fake_backend: FakeBackend) -> None:
    asked = _listings(fake_backend)
    assert _usage(site)["volumes"] == 0
    assert _usage(site)["volumes"] == 0
    assert len(asked) == 1  # the second whoami used the kept figures
    _deploy(site, "web", "data")
    assert _usage(site)["volumes"] == 1
    deleted = site.call("delete_service", service="web", keep_volumes=True, confirm=True)
    assert deleted["status_code"] == 200, deleted
    assert _usage(site)["volumes"] == 1  # kept: the engine still has it
    gone = site.call("delete_volume", volume="data", confirm=True)
    assert gone["status_code"] == 200, gone
    assert _usage(site)["volumes"] == 0


def test_a_failed_mutating_call_drops_the_figures_too(site: Site, fake_backend: FakeBackend) -> None:
    asked = _listings(fake_backend)
    _usage(site)
    refused = site.call("deploy_service", name="web", image="example.test/missing:1")
    assert refused["error"]["code"] == "image_not_found", refused
    _usage(site)
    assert len(asked) == 2


def test_reads_keep_the_figures(site: Site, fake_backend: FakeBackend) -> None:
    _deploy(site, "web", "data")
    asked = _listings(fake_backend)
    _usage(site)
    for tool, args in (("list_services", {}), ("get_service", {"service": "web"}), ("list_volumes", {})):
        assert site.call(tool, **args)["status_code"] == 200
    assert _usage(site)["volumes"] == 1
    assert asked.count(_tenant(site)) == 2  # whoami once, list_volumes once


def _tenant(site: Site, key: str | None = None) -> str:
    """The caller's tenant id, without a whoami (which would fill the cache)."""
    return site.run(site.platform.tenants.authenticate, key or site.key).tenant_id


def test_one_tenants_figures_are_never_anothers(site: Site, fake_backend: FakeBackend) -> None:
    other = site.call("create_tenant", key=site.admin, name="globex")["key"]["key"]
    _deploy(site, "web", "data")
    _deploy(site, "web2", "more")
    logs = site.platform.builds.log_files.folder(_tenant(site))
    logs.mkdir(parents=True)
    (logs / "b_1.log").write_bytes(b"x" * 1000)
    mine = _usage(site)
    assert (mine["volumes"], mine["build_log_bytes"]) == (2, 1000)
    # The other tenant asks while this one's figures are kept: it sees its own, and keeps them.
    theirs = _usage(site, other)
    assert (theirs["volumes"], theirs["build_log_bytes"]) == (0, 0)
    _deploy(site, "api", "cache", key=other)
    assert _usage(site, other)["volumes"] == 1
    # The other tenant's deploy dropped only its own figures: this tenant's are still the kept ones.
    asked = _listings(fake_backend)
    assert _usage(site)["volumes"] == 2
    assert _usage(site, other)["volumes"] == 1
    assert asked == []


def _status(site: Site, fake: FakeBackend, now: list[float]) -> Status:
    p = site.platform
    settings = p.settings.model_copy(update={"usage_cache_ttl_s": 2.0})
    return Status(settings, p.store, fake, p.builder, p.builds.log_files, clock=lambda: now[0])


def test_changes_outside_a_call_show_once_the_figures_are_older_than_the_ttl(
    site: Site, fake_backend: FakeBackend
) -> None:
    now = [100.0]
    status = _status(site, fake_backend, now)
    principal: Principal = site.run(site.platform.tenants.authenticate, site.key)
    assert site.run(status.usage, principal).build_log_bytes == 0
    # A build's log grows in the background (or another process on the data dir writes one).
    logs = site.platform.builds.log_files.folder(principal.tenant_id)
    logs.mkdir(parents=True)
    (logs / "b_1.log").write_bytes(b"x" * 300)
    now[0] += 1.9
    assert site.run(status.usage, principal).build_log_bytes == 0
    now[0] += 0.2
    assert site.run(status.usage, principal).build_log_bytes == 300
    (logs / "b_1.log").write_bytes(b"x" * 500)
    status.forget_usage(principal.tenant_id)
    assert site.run(status.usage, principal).build_log_bytes == 500


def test_an_engine_that_is_away_is_never_kept(site: Site, fake_backend: FakeBackend) -> None:
    now = [100.0]
    status = _status(site, fake_backend, now)
    principal: Principal = site.run(site.platform.tenants.authenticate, site.key)
    fake_backend.available = False
    assert site.run(status.usage, principal).volumes is None
    fake_backend.available = True
    assert site.run(status.usage, principal).volumes == 0


def test_a_burst_of_one_tenant_computes_once() -> None:
    computed = [0]

    async def compute() -> HeldFigures:
        computed[0] += 1
        await anyio.sleep(0)
        return HeldFigures(3, 10)

    async def burst() -> list[HeldFigures]:
        cache = UsageCache(60.0, clock=lambda: 0.0)
        found: list[HeldFigures] = []

        async def ask() -> None:
            found.append(await cache.figures("t_a", compute))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(ask)
        return found

    assert anyio.run(burst) == [HeldFigures(3, 10)] * 10
    assert computed == [1]


def test_a_forget_while_computing_is_not_undone_by_the_computation() -> None:
    cache = UsageCache(60.0, clock=lambda: 0.0)
    volumes = [1]

    async def compute() -> HeldFigures:
        found = HeldFigures(volumes[0], 0)
        cache.forget("t_a")  # a call of the tenant changed its volumes after the engine was listed
        volumes[0] = 2
        return found

    async def steady() -> HeldFigures:
        return HeldFigures(volumes[0], 0)

    async def run() -> tuple[HeldFigures, HeldFigures]:
        return await cache.figures("t_a", compute), await cache.figures("t_a", steady)

    first, second = anyio.run(run)
    assert (first.volumes, second.volumes) == (1, 2)


def test_tenants_are_kept_apart_and_forgotten_apart() -> None:
    cache = UsageCache(60.0, clock=lambda: 0.0)

    def of(figures: HeldFigures) -> object:
        async def compute() -> HeldFigures:
            return figures

        return compute

    async def run() -> list[HeldFigures]:
        a = await cache.figures("t_a", of(HeldFigures(1, 100)))  # type: ignore[arg-type]
        b = await cache.figures("t_b", of(HeldFigures(2, 200)))  # type: ignore[arg-type]
        cache.forget("t_b")
        a2 = await cache.figures("t_a", of(HeldFigures(9, 900)))  # type: ignore[arg-type]
        b2 = await cache.figures("t_b", of(HeldFigures(3, 300)))  # type: ignore[arg-type]
        return [a, b, a2, b2]

    assert anyio.run(run) == [HeldFigures(1, 100), HeldFigures(2, 200), HeldFigures(1, 100), HeldFigures(3, 300)]
