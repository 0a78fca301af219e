"""platform_status asks the engine for its facts (version, runtimes, nodes) at most once per engine_facts_ttl_s."""

from __future__ import annotations

import anyio

from orchestrator.backends.base import BackendInfo
from orchestrator.status import Status
from tests.fakes import FakeBackend

from .site import Site


def _counted(fake: FakeBackend) -> list[int]:
    asked = [0]
    info = fake.info

    async def counting() -> BackendInfo:
        asked[0] += 1
        return await info()

    fake.info = counting  # type: ignore[method-assign]
    return asked


def _status(site: Site, fake: FakeBackend, now: list[float]) -> Status:
    p = site.platform
    return Status(p.settings, p.store, fake, p.builder, p.builds.log_files, clock=lambda: now[0])


def test_concurrent_callers_share_one_ask_until_the_facts_are_older_than_the_ttl(
    site: Site, fake_backend: FakeBackend
) -> None:
    asked, now = _counted(fake_backend), [100.0]
    status = _status(site, fake_backend, now)
    principal = site.run(site.platform.tenants.authenticate, site.key)

    async def burst() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(status.report, principal)

    site.run(burst)
    assert asked[0] == 1
    now[0] += site.platform.settings.engine_facts_ttl_s - 0.1
    assert site.run(status.report, principal).reachable
    assert asked[0] == 1
    now[0] += 0.2
    assert site.run(status.report, principal).reachable
    assert asked[0] == 2


def test_an_engine_that_is_away_is_never_kept_and_forgetting_asks_again(site: Site, fake_backend: FakeBackend) -> None:
    asked, now = _counted(fake_backend), [100.0]
    status = _status(site, fake_backend, now)
    principal = site.run(site.platform.tenants.authenticate, site.key)
    assert site.run(status.report, principal).reachable
    status.forget_engine_facts()
    fake_backend.available = False
    assert not site.run(status.report, principal).reachable
    fake_backend.available = True
    # The failure was not kept: the engine, back, is asked at once.
    assert site.run(status.report, principal).reachable
    assert asked[0] == 3
