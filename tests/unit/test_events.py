"""The event log: what use-cases record (over the in-memory engine), paging by cursor, the cap per tenant,
expiry, following it (what MCP subscriptions publish), and the audit log for admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.builds import BuildManager
from orchestrator.events import EventLog
from orchestrator.housekeeping import Housekeeping
from orchestrator.models import Event
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store, TenantStore
from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


def _events(site: Site, key: str | None = None, **args: Any) -> list[dict[str, Any]]:
    answer = site.call("list_events", key=key, **args)
    assert answer["status_code"] == 200, answer
    return list(answer["events"])


def _story(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Oldest first: (type, target) of each event."""
    return [(e["type"], e["target"]) for e in reversed(events)]


def test_a_service_life_is_recorded_in_order_with_its_causes(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    fake_backend.crash(svc["id"], 3, restarts=site.platform.settings.crash_limit)
    assert site.call("get_service", service="web")["status"] == "failed"
    assert site.call("start_service", service="web")["status"] == "running"
    site.call("stop_service", service="web")
    site.call("delete_service", service="web", confirm=True)

    events = _events(site)
    assert _story(events) == [
        ("deployed", "web"),
        ("crashed", "web"),
        ("breaker_opened", "web"),
        ("breaker_closed", "web"),
        ("started", "web"),
        ("stopped", "web"),
        ("deleted", "web"),
    ]
    by_type = {e["type"]: e for e in events}
    assert by_type["crashed"]["exit_code"] == 3
    assert "exited with code 3" in by_type["crashed"]["cause"]
    assert "circuit breaker open" in by_type["breaker_opened"]["cause"]
    assert by_type["deployed"]["cause"] == f"deploy_service: image {APP_IMAGE}"
    assert {e["kind"] for e in events} == {"service"} and {e["target_id"] for e in events} == {svc["id"]}
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)


def test_a_crash_at_start_and_a_restart_are_recorded(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.exit_at_start[APP_IMAGE] = 3
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    site.call("restart_service", service="web")
    events = _events(site, target="web")
    assert _story(events) == [("deployed", "web"), ("crashed", "web"), ("restarted", "web"), ("crashed", "web")]
    assert [e["exit_code"] for e in events if e["type"] == "crashed"] == [3, 3]


def test_an_update_that_rolls_back_is_a_crash_then_a_failure(site: Site, fake_backend: FakeBackend) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    broken = "example.test/app:2"
    fake_backend.images.add(broken)
    fake_backend.exit_at_start[broken] = 4
    refused = site.call("update_service", service="web", image=broken)
    assert refused["error"]["code"] == "workload_failed"
    events = _events(site)
    assert _story(events)[:3] == [("deployed", "web"), ("crashed", "web"), ("failed", "web")]
    crashed, failed = events[-2], events[-3]
    assert crashed["exit_code"] == 4
    assert failed["cause"].startswith("update of web rolled back") and "<<<" not in failed["cause"]


def test_the_reconciler_records_its_repairs(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    fake_backend.lose(svc["id"])
    site.run(site.platform.reconciler.reconcile_once)
    newest = _events(site, limit=1)[0]
    assert (newest["type"], newest["target"]) == ("repaired", "web")
    assert "reconciler recreated it" in newest["cause"]


def test_another_tenant_sees_none_of_them(site: Site) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    other = site.call("create_tenant", key=site.admin, name="rival")["key"]["key"]
    assert _events(site, key=other) == []
    assert _events(site, key=other, target=svc["id"]) == []
    assert _events(site, key=other, target="web") == []


def test_list_events_filters_by_kind_and_refuses_what_it_does_not_know(site: Site) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert _events(site, kind="build") == []
    assert [e["kind"] for e in _events(site, kind="service")] == ["service"]
    for args in ({"kind": "services"}, {"limit": 0}, {"limit": 201}):
        refused = site.call("list_events", **args)
        assert (refused["status_code"], refused["error"]["code"]) == (400, "invalid_input"), args


def test_list_audit_is_for_admins_and_shows_a_members_calls(site: Site) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    site.call("delete_service", service="absent", confirm=True)
    refused = site.call("list_audit")
    assert (refused["status_code"], refused["error"]["code"]) == (403, "forbidden")

    entries = site.call("list_audit", key=site.admin, tenant="acme")["entries"]
    assert [(e["action"], e["target"], e["outcome"]) for e in entries[:2]] == [
        ("delete_service", "absent", "not_found"),
        ("deploy_service", "web", "ok"),
    ]
    assert {e["tenant"] for e in entries} == {"acme"}
    everyone = site.call("list_audit", key=site.admin)["entries"]
    assert {"admin", "acme"} <= {e["tenant"] for e in everyone}
    page = site.call("list_audit", key=site.admin, tenant="acme", limit=1)
    older = site.call("list_audit", key=site.admin, tenant="acme", limit=1, before=page["before"])
    assert older["entries"][0]["action"] == "deploy_service"
    unknown = site.call("list_audit", key=site.admin, tenant="nobody")
    assert unknown["error"]["code"] == "not_found"


# -- the log itself, over the store --------------------------------------------------------------------------------


async def _tenant(store: Store, name: str) -> TenantStore:
    return store.scoped((await store.tenants.create(name, Quotas())).id)


async def _record(log: EventLog, ts: TenantStore, n: int, name: str = "web") -> None:
    for i in range(n):
        await log.record(ts, "service", f"svc_{name}", name, "restarted", f"restart {i}")


@pytest.mark.anyio
async def test_pages_follow_the_cursor_without_gaps_or_repeats(store: Store, tmp_path: Path) -> None:
    log = EventLog(Settings(data_dir=tmp_path), store)
    ts = await _tenant(store, "a")
    await _record(log, ts, 7)
    seen: list[Event] = []
    before = None
    while True:
        page = await log.page(ts, None, None, 3, before)
        seen += page.events
        if len(page.events) < 3:
            break
        before = page.events[-1].id
    assert [e.cause for e in seen] == [f"restart {i}" for i in reversed(range(7))]
    assert len({e.id for e in seen}) == 7


@pytest.mark.anyio
async def test_each_tenant_keeps_its_newest_events_up_to_the_cap(store: Store, tmp_path: Path) -> None:
    log = EventLog(Settings(data_dir=tmp_path, events_per_tenant=10), store)
    busy, quiet = await _tenant(store, "busy"), await _tenant(store, "quiet")
    await _record(log, quiet, 3)
    await _record(log, busy, 15)
    kept = (await log.page(busy, None, None, 200, None)).events
    assert [e.cause for e in kept] == [f"restart {i}" for i in reversed(range(5, 15))]
    assert len((await log.page(quiet, None, None, 200, None)).events) == 3


@pytest.mark.anyio
async def test_events_expire_after_their_retention(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, event_retention_days=30)
    log = EventLog(settings, store)
    ts = await _tenant(store, "a")
    now = datetime.now(UTC)
    await store.db.execute(
        "INSERT INTO events (ts, tenant_id, kind, target_id, target_name, type, cause) VALUES (?, ?, 'service',"
        " 'svc_old', 'old', 'deployed', 'long ago')",
        ((now - timedelta(days=31)).isoformat(timespec="milliseconds"), ts.tenant_id),
    )
    await _record(log, ts, 1)
    builds = BuildManager(settings, store, builder=None)  # type: ignore[arg-type]  # logs only, no builds run
    counts = await Housekeeping(settings, store, builds).expire_rows(now)
    assert counts["events_expired"] == 1
    assert [e.target for e in (await log.page(ts, None, None, 50, None)).events] == ["web"]


@pytest.mark.anyio
async def test_watch_follows_one_tenant_from_its_cursor(store: Store, tmp_path: Path) -> None:
    log = EventLog(Settings(data_dir=tmp_path), store)
    mine, other = await _tenant(store, "mine"), await _tenant(store, "other")
    await _record(log, mine, 1, "before")
    cursor = await mine.events.last_id()
    got: list[Event] = []

    async def follow() -> None:
        async for event in log.watch(mine, cursor, poll_s=3600):  # woken by record, not by the poll
            got.append(event)
            if len(got) == 2:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await _record(log, other, 1, "theirs")
            await _record(log, mine, 2, "after")
    assert [(e.target, e.cause) for e in got] == [("after", "restart 0"), ("after", "restart 1")]
