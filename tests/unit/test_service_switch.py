"""Zero-downtime redeploys (orchestrator/services/switch.py) over the in-memory engine: the new version runs
beside the old one until it answers, a broken one never replaces the old, and what an update that died
half-way leaves behind is cleaned up by the reconciler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.labels import slot_id
from orchestrator.models import ServiceRecord
from orchestrator.services.switch import stale
from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site

NEW_IMAGE = "example.test/app:2"


def _deploy(site: Site, fake: FakeBackend, **args: object) -> str:
    fake.images.add(NEW_IMAGE)
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, **args)
    assert svc["status"] == "running", svc
    return str(svc["id"])


def test_an_update_starts_the_new_version_beside_the_old_and_retires_the_old(
    site: Site, fake_backend: FakeBackend
) -> None:
    sid = _deploy(site, fake_backend)
    fake_backend.created.clear()
    svc = site.call("update_service", service="web", image=NEW_IMAGE)
    assert (svc["status"], svc["image"]) == ("running", NEW_IMAGE)
    assert [s.slot for s in fake_backend.created] == ["next"]  # never the old container recreated in place
    assert fake_backend.workloads[sid].spec.image == NEW_IMAGE
    assert fake_backend.removed[-1] == slot_id(sid, "old")
    assert sorted(fake_backend.workloads) == [sid]


def test_set_env_switches_too_and_the_promoted_container_matches_its_spec(
    site: Site, fake_backend: FakeBackend
) -> None:
    sid = _deploy(site, fake_backend)
    site.call("set_env", service="web", vars={"COLOR": "blue"})
    assert fake_backend.workloads[sid].spec.env["COLOR"] == "blue"
    fake_backend.created.clear()
    # The promoted container's spec hash is the service's: a restart restarts it rather than recreating it.
    assert site.call("restart_service", service="web")["status"] == "running"
    assert fake_backend.created == []


def test_a_new_version_that_crashes_never_replaces_the_running_one(site: Site, fake_backend: FakeBackend) -> None:
    sid = _deploy(site, fake_backend)
    fake_backend.exit_at_start[NEW_IMAGE] = 3
    refused = site.call("update_service", service="web", image=NEW_IMAGE)
    assert refused["error"]["code"] == "workload_failed"
    assert "the new version of web exited with code 3" in refused["error"]["message"]
    assert "rolled back (service is running" in refused["error"]["message"]
    assert fake_backend.workloads[sid].spec.image == APP_IMAGE and fake_backend.workloads[sid].state == "running"
    assert sorted(fake_backend.workloads) == [sid]  # the new one is gone
    assert site.call("get_service", service="web")["image"] == APP_IMAGE


def test_set_env_that_breaks_the_service_is_rolled_back(site: Site, fake_backend: FakeBackend) -> None:
    sid = _deploy(site, fake_backend)
    fake_backend.exit_at_start[APP_IMAGE] = 1  # any new container of this image exits at once
    refused = site.call("set_env", service="web", vars={"MODE": "broken"})
    assert refused["error"]["code"] == "workload_failed", refused
    assert fake_backend.workloads[sid].state == "running" and "MODE" not in fake_backend.workloads[sid].spec.env
    assert "MODE" not in site.call("list_env", service="web")["vars"]


def test_services_with_volumes_are_recreated_not_doubled(site: Site, fake_backend: FakeBackend) -> None:
    _deploy(site, fake_backend, volumes=[{"name": "data", "path": "/data"}])
    fake_backend.created.clear()
    site.call("update_service", service="web", image=NEW_IMAGE)
    assert [s.slot for s in fake_backend.created] == [None]


def test_the_reconciler_keeps_an_update_under_way_and_removes_what_a_dead_one_left(
    site: Site, fake_backend: FakeBackend
) -> None:
    sid = _deploy(site, fake_backend)
    spec = fake_backend.workloads[sid].spec
    site.run(fake_backend.ensure_workload, spec.model_copy(update={"slot": "next"}))
    orphan = spec.model_copy(update={"id": "svc_000000000000", "slot": "next"})  # its service is gone
    site.run(fake_backend.ensure_workload, orphan)
    site.run(site.platform.reconciler.reconcile_once)
    assert slot_id(sid, "next") in fake_backend.workloads  # its update may still be waiting for it
    assert slot_id("svc_000000000000", "next") not in fake_backend.workloads
    assert fake_backend.workloads[sid].state == "running"


def test_a_slot_container_is_stale_once_its_update_cannot_be_running() -> None:
    rec = ServiceRecord.model_construct(updated_at=datetime(2026, 1, 1, tzinfo=UTC))
    at = rec.updated_at
    assert stale(None, "next", at, 120)
    assert not stale(rec, "old", at + timedelta(seconds=119), 120)
    assert stale(rec, "old", at + timedelta(seconds=121), 120)
    assert not stale(rec, "next", at + timedelta(seconds=700), 120)  # a new version may take 600 s to answer
    assert stale(rec, "next", at + timedelta(seconds=721), 120)
