"""Databases through the REST face over the in-memory engine: create, connect, link, delete."""

from __future__ import annotations

import pytest

from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


def test_create_get_connection_string_and_delete(site: Site, fake_backend: FakeBackend) -> None:
    db = site.call("create_database", name="main", engine="postgres")
    assert db["status_code"] == 200 and db["status"] == "running", db
    assert [d["name"] for d in site.call("list_databases")["databases"]] == ["main"]
    got = site.call("get_database", database="main")
    assert got["engine"] == "postgres"
    hidden = site.call("database_connection_string", database="main")
    shown = site.call("database_connection_string", database="main", reveal=True)
    assert "postgresql://" in str(shown) and str(hidden) != str(shown)
    assert fake_backend.running("database")
    volumes = set(fake_backend.volumes)
    assert volumes
    gone = site.call("delete_database", database="main", confirm=True)
    assert gone["status_code"] == 200, gone
    assert not fake_backend.running("database") and not set(fake_backend.volumes) & volumes
    assert site.call("get_database", database="main")["error"]["code"] == "not_found"


def test_redis_and_link_to_a_service(site: Site, fake_backend: FakeBackend) -> None:
    assert site.call("create_database", name="cache", engine="redis")["status"] == "running"
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    linked = site.call("link_database", database="cache", service="web", env_var="REDIS_URL")
    assert linked["status_code"] == 200, linked
    assert fake_backend.workloads[svc["id"]].spec.env["REDIS_URL"].startswith("redis://")
    unlinked = site.call("link_database", database="cache", service="web", env_var="REDIS_URL", unlink=True)
    assert unlinked["status_code"] == 200, unlinked
    assert "REDIS_URL" not in fake_backend.workloads[svc["id"]].spec.env


def test_bad_names_engines_and_clashes_are_refused(site: Site, fake_backend: FakeBackend) -> None:
    assert site.call("create_database", name="Bad Name!", engine="postgres")["error"]["code"] == "invalid_input"
    assert site.call("create_database", name="db", engine="mysql")["error"]["code"] == "invalid_input"
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    clash = site.call("create_database", name="web", engine="redis")
    assert clash["error"]["code"] == "conflict", clash
    assert not fake_backend.running("database")


def test_a_database_that_crashes_is_reported_and_recreated(site: Site, fake_backend: FakeBackend) -> None:
    db = site.call("create_database", name="main", engine="postgres")
    fake_backend.crash(db["id"], 1)
    got = site.call("get_database", database="main")
    assert got["status"] == "failed" and "exited with code 1" in got["last_error"], got
    fake_backend.lose(db["id"])
    counts = site.run(site.platform.reconciler.reconcile_once)
    assert counts["databases_redeployed"] == 1
    assert fake_backend.workloads[db["id"]].state == "running"
    assert site.call("get_database", database="main")["status"] == "running"


def test_link_edges_and_deleting_a_linked_database(site: Site, fake_backend: FakeBackend) -> None:
    site.call("create_database", name="main", engine="postgres")
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert site.call("link_database", database="nope", service="web")["error"]["code"] == "not_found"
    assert site.call("link_database", database="main", service="nope")["error"]["code"] == "not_found"
    linked = site.call("link_database", database="main", service="web")
    assert linked["status_code"] == 200, linked
    assert "DATABASE_URL" in fake_backend.workloads[svc["id"]].spec.env
    again = site.call("create_database", name="main", engine="postgres")
    assert again["error"]["code"] == "conflict", again
    gone = site.call("delete_database", database="main", confirm=True)
    assert gone["status_code"] == 200, gone
    assert "DATABASE_URL" not in fake_backend.workloads[svc["id"]].spec.env
    assert site.call("get_service", service="web")["status"] == "running"


def test_database_quota_and_an_engine_that_is_away(site: Site, fake_backend: FakeBackend) -> None:
    big = site.call("create_database", name="big", engine="postgres", memory_mb=10**6)
    assert big["error"]["code"] == "invalid_input", big
    fake_backend.available = False
    away = site.call("create_database", name="main", engine="redis")
    assert away["error"]["code"] == "backend_unavailable", away
    fake_backend.available = True
    assert site.call("list_databases")["databases"] == []
    assert not fake_backend.volumes


def test_a_delete_while_the_reconciler_recreates_the_container_leaves_none_behind(
    site: Site, fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for services (test_app_services): a delete_database between the pass's look at a lost container and
    its repair; the pass removes what it recreated."""
    db = site.call("create_database", name="main", engine="redis")
    fake_backend.lose(db["id"])
    site.reconcile_marking(monkeypatch, "databases", db["id"], "deleted")
    assert db["id"] not in fake_backend.workloads
