"""Services through the REST face of the HTTP app, over the in-memory engine: what a caller sees."""

from __future__ import annotations

import socket

import pytest

from orchestrator.backends.base import WorkloadStatus
from orchestrator.errors import BackendUnavailable
from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


def test_deploy_get_list_and_delete_a_service(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, env={"GREETING": "hi"})
    assert svc["status_code"] == 200, svc
    assert svc["status"] == "running" and svc["internal_url"].startswith("http://127.0.0.1:")
    got = site.call("get_service", service="web")
    assert got["env_keys"] == ["GREETING"] and got["status"] == "running"
    assert [s["name"] for s in site.call("list_services")["services"]] == ["web"]
    gone = site.call("delete_service", service="web", confirm=True)
    assert gone["status_code"] == 200, gone
    assert not fake_backend.workloads
    missing = site.call("get_service", service="web")
    assert (missing["status_code"], missing["error"]["code"]) == (404, "not_found")


def test_stop_start_and_restart(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    stopped = site.call("stop_service", service="web")
    assert stopped["status"] == "stopped"
    assert fake_backend.workloads[svc["id"]].state == "exited"
    started = site.call("start_service", service="web")
    assert started["status"] == "running"
    restarted = site.call("restart_service", service="web")
    assert restarted["status"] == "running"


def test_a_service_that_exits_at_start_is_failed_with_its_log_tail(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.exit_at_start[APP_IMAGE] = 3
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert svc["status"] == "failed", svc
    assert "exited with code 3" in svc["last_error"]
    # Fixed image: start_service brings it back.
    del fake_backend.exit_at_start[APP_IMAGE]
    assert site.call("start_service", service="web")["status"] == "running"


def test_a_crash_while_running_shows_on_get_service(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, env={"TOKEN": "s3cret-value"})
    fake_backend.say(svc["id"], "boom: s3cret-value leaked")
    fake_backend.crash(svc["id"], 2, oom=True)
    got = site.call("get_service", service="web")
    assert got["status"] == "failed"
    assert "out of memory" in got["last_error"]
    assert "s3cret-value" not in got["last_error"] and "boom" in got["last_error"]


def test_unknown_image_and_runtime_leave_nothing(site: Site, fake_backend: FakeBackend) -> None:
    missing = site.call("deploy_service", name="web", image="example.test/absent:1")
    assert (missing["status_code"], missing["error"]["code"]) == (404, "image_not_found"), missing
    refused = site.call("deploy_service", name="web", image="elsewhere.test/x:1")
    assert refused["error"]["code"] == "image_not_allowed"
    no_runtime = site.call("deploy_service", name="web", image=APP_IMAGE, runtime="sysbox")
    assert no_runtime["error"]["code"] == "runtime_unavailable", no_runtime
    assert site.call("list_services")["services"] == []
    assert not fake_backend.workloads and not fake_backend.volumes


def test_an_engine_refusal_undoes_the_record_and_volumes(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.refuse[APP_IMAGE] = BackendUnavailable("engine went away mid-create")
    failed = site.call("deploy_service", name="web", image=APP_IMAGE, volumes=[{"name": "data", "path": "/data"}])
    assert (failed["status_code"], failed["error"]["code"]) == (503, "backend_unavailable"), failed
    assert site.call("list_services")["services"] == []
    assert not fake_backend.volumes


def test_env_set_list_reveal_unset(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, env={"A": "1"})
    site.call("set_env", service="web", vars={"B": "two"})
    listed = site.call("list_env", service="web")
    assert (listed["vars"], listed["revealed"]) == ({"A": "****", "B": "****"}, False), listed
    revealed = site.call("list_env", service="web", reveal=True)
    assert (revealed["vars"], revealed["revealed"]) == ({"A": "1", "B": "two"}, True), revealed
    assert fake_backend.workloads[svc["id"]].spec.env["B"] == "two"
    site.call("unset_env", service="web", keys=["A"])
    assert "A" not in fake_backend.workloads[svc["id"]].spec.env
    bad = site.call("set_env", service="web", vars={"1BAD": "x"})
    assert bad["error"]["code"] == "invalid_input"


def test_update_changes_the_running_workload(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    updated = site.call("update_service", service="web", memory_mb=256, env={"X": "y"})
    assert updated["status_code"] == 200, updated
    spec = fake_backend.workloads[svc["id"]].spec
    assert spec.memory_mb == 256 and spec.env["X"] == "y"


def test_logs_are_marked_untrusted_and_masked(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, env={"TOKEN": "hunter2-secret"})
    fake_backend.say(svc["id"], "hello")
    fake_backend.say(svc["id"], "token is hunter2-secret", "stderr")
    logs = site.call("service_logs", service="web", tail=10)
    text = str(logs)
    assert "hello" in text and "UNTRUSTED" in text and "hunter2-secret" not in text


def test_quota_of_services_is_enforced(site: Site, fake_backend: FakeBackend) -> None:
    too_big = site.call("deploy_service", name="web", image=APP_IMAGE, memory_mb=999_999)
    assert too_big["error"]["code"] == "invalid_input", too_big
    for name in ("a", "b"):
        assert site.call("deploy_service", name=name, image=APP_IMAGE, memory_mb=4000)["status"] == "running"
    over = site.call("deploy_service", name="c", image=APP_IMAGE, memory_mb=4000)
    assert (over["status_code"], over["error"]["code"]) == (403, "quota_exceeded"), over
    assert len(fake_backend.workloads) == 2


def test_the_reconciler_recreates_a_lost_container(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    fake_backend.lose(svc["id"])
    counts = site.run(site.platform.reconciler.reconcile_once)
    assert counts["redeployed"] == 1
    assert fake_backend.workloads[svc["id"]].state == "running"
    assert site.call("get_service", service="web")["status"] == "running"


def test_an_engine_that_is_away_is_a_clear_error(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.available = False
    away = site.call("deploy_service", name="web", image=APP_IMAGE)
    assert (away["status_code"], away["error"]["code"]) == (503, "backend_unavailable")
    assert away["error"]["hint"]


def test_readiness_by_tcp_and_a_port_that_never_answers(site: Site, fake_backend: FakeBackend) -> None:
    tcp = site.call("deploy_service", name="tcp", image=APP_IMAGE, port=6000, health_check={"type": "tcp"})
    assert tcp["status"] == "running", tcp
    with socket.socket() as probe:  # a port with nothing behind it: refused at once
        probe.bind(("127.0.0.1", 0))
        fake_backend.publish_port = probe.getsockname()[1]
        for check in ({"type": "http", "path": "/health"}, {"type": "tcp"}):
            name = f"silent-{check['type']}"
            svc = site.call(
                "deploy_service", name=name, image=APP_IMAGE, port=8000, health_check=check, wait_timeout_s=1
            )
            assert svc["status"] == "deploying", svc  # still deploying: the caller is told to poll
            assert site.call("get_service", service=name)["status"] == "deploying"
    none = site.call("deploy_service", name="none", image=APP_IMAGE, port=8000, health_check={"type": "none"})
    assert none["status"] == "running"


def test_an_engine_that_checks_health_decides_readiness_beside_the_probe(site: Site, fake_backend: FakeBackend) -> None:
    with socket.socket() as probe:  # the platform's own probe is refused at once
        probe.bind(("127.0.0.1", 0))
        fake_backend.publish_port = probe.getsockname()[1]
        fake_backend.health[APP_IMAGE] = "healthy"
        assert site.call("deploy_service", name="checked", image=APP_IMAGE, port=8000)["status"] == "running"
        fake_backend.health[APP_IMAGE] = "pending"
        pending = site.call("deploy_service", name="pending", image=APP_IMAGE, port=8000, wait_timeout_s=1)
        assert pending["status"] == "deploying", pending
        fake_backend.health[APP_IMAGE] = "unhealthy"
        failed = site.call("deploy_service", name="unhealthy", image=APP_IMAGE, port=8000)
    assert failed["status"] == "failed", failed
    assert "did not pass its health check (http on port 8000)" in failed["last_error"]
    assert fake_backend.workloads[failed["id"]].state == "exited"  # stopped: the breaker's caller decides


def test_volumes_kept_or_removed_with_the_service(site: Site, fake_backend: FakeBackend) -> None:
    vols = [{"name": "data", "path": "/data"}]
    site.call("deploy_service", name="keep", image=APP_IMAGE, volumes=vols)
    kept = site.call("delete_service", service="keep", confirm=True, keep_volumes=True)
    assert kept["status_code"] == 200, kept
    assert len(fake_backend.volumes) == 1
    again = site.call("deploy_service", name="again", image=APP_IMAGE, volumes=vols)  # the kept volume, reused
    assert again["status"] == "running" and len(fake_backend.volumes) == 1
    clash = site.call("deploy_service", name="two", image=APP_IMAGE, volumes=[*vols, {"name": "x", "path": "/data"}])
    assert clash["error"]["code"] == "invalid_input", clash
    gone = site.call("delete_service", service="again", confirm=True)
    assert gone["status_code"] == 200 and not fake_backend.volumes, gone


def test_update_to_an_image_the_engine_lacks_changes_nothing(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    missing = site.call("update_service", service="web", image="example.test/absent:2")
    assert missing["error"]["code"] == "image_not_found", missing
    assert fake_backend.workloads[svc["id"]].spec.image == APP_IMAGE
    fake_backend.images.add("example.test/app:2")
    moved = site.call("update_service", service="web", image="example.test/app:2")
    assert moved["status_code"] == 200 and fake_backend.workloads[svc["id"]].spec.image == "example.test/app:2"


def test_list_revisions_and_rollback_service(site: Site, fake_backend: FakeBackend) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, env={"GREETING": "hi-secret"})
    site.call("set_env", service="web", vars={"GREETING": "bye-secret"})
    listed = site.call("list_revisions", service="web")
    assert listed["status_code"] == 200, listed
    assert [(r["number"], r["cause"], r["live"]) for r in listed["revisions"]] == [
        (2, "set_env: GREETING", True),
        (1, "deploy", False),
    ]
    assert "secret" not in str(listed)
    done = site.call("rollback_service", service="web", revision=1)
    assert (done["status_code"], done["revision"], done["status"]) == (200, 3, "running"), done
    assert fake_backend.workloads[svc["id"]].spec.env == {"GREETING": "hi-secret"}
    missing = site.call("rollback_service", service="web", revision=9)
    assert (missing["status_code"], missing["error"]["code"]) == (404, "not_found"), missing
    other = site.call("create_tenant", key=site.admin, name="other")["key"]["key"]
    for tool, args in (("list_revisions", {}), ("rollback_service", {"revision": 1})):
        stolen = site.call(tool, key=other, service="web", **args)
        assert (stolen["status_code"], stolen["error"]["code"]) == (404, "not_found"), stolen


def test_an_argument_breaking_a_rule_the_schema_does_not_state_is_invalid_input(
    site: Site, fake_backend: FakeBackend
) -> None:
    """Found by the schemathesis fuzz: a user name out of the request model's pattern was a 500."""
    refused = site.call("deploy_service", name="web", image=APP_IMAGE, user="ÞÚ\x03")
    assert refused["status_code"] == 400, refused
    assert refused["error"]["code"] == "invalid_input" and "user" in refused["error"]["message"], refused
    assert site.call("list_services")["services"] == [] and not fake_backend.workloads


def test_a_service_deleted_while_the_list_is_made_is_left_out(site: Site, fake_backend: FakeBackend) -> None:
    """list_services under churn: another caller's delete lands between the listing and one service's refresh."""
    site.call("deploy_service", name="stays", image=APP_IMAGE, port=8000)
    gone = site.call("deploy_service", name="goes", image=APP_IMAGE, port=8000)
    tenant_id = site.run(site.platform.tenants.authenticate, site.key).tenant_id
    fake_backend.crash(gone["id"])  # its refresh will write (a crash), then read the record back
    status = fake_backend.workload_status

    async def deleted_meanwhile(workload_id: str) -> WorkloadStatus:
        if workload_id == gone["id"]:
            await site.platform.store.scoped(tenant_id).services.delete(workload_id)
        return await status(workload_id)

    fake_backend.workload_status = deleted_meanwhile  # type: ignore[method-assign]
    listed = site.call("list_services")
    assert listed["status_code"] == 200, listed
    assert [s["name"] for s in listed["services"]] == ["stays"]


def test_a_delete_while_the_reconciler_recreates_the_container_leaves_none_behind(
    site: Site, fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass looks at a lost container, a delete_service marks the record and removes what it finds, then the
    pass recreates the container: the pass must see the delete and remove what it made, or the delete, waiting
    for the engine to have nothing left, finds a container running and the tenant an orphan."""
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    fake_backend.lose(svc["id"])
    site.reconcile_marking(monkeypatch, "services", svc["id"], "deleted")
    assert svc["id"] not in fake_backend.workloads


def test_a_stop_while_the_reconciler_recreates_the_container_leaves_it_stopped(
    site: Site, fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    fake_backend.lose(svc["id"])
    site.reconcile_marking(monkeypatch, "services", svc["id"], "stopped")
    assert fake_backend.workloads[svc["id"]].state == "exited"
