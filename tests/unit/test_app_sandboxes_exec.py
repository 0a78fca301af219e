"""Sandboxes and exec through the REST face over the in-memory engine."""

from __future__ import annotations

from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


def test_sandbox_create_exec_list_delete(site: Site, fake_backend: FakeBackend) -> None:
    box = site.call("create_sandbox", name="box")
    assert box["status_code"] == 200, box
    assert [b["name"] for b in site.call("list_sandboxes")["sandboxes"]] == ["box"]
    run = site.call("exec", sandbox="box", command=["sh", "-c", "echo hi there"])
    assert run["exit_code"] == 0 and "hi there" in run["stdout"], run
    fed = site.call("exec", sandbox="box", command=["cat"], stdin="from-stdin")
    assert "from-stdin" in fed["stdout"]
    gone = site.call("delete_sandbox", sandbox="box", confirm=True)
    assert gone["status_code"] == 200, gone
    assert site.call("list_sandboxes")["sandboxes"] == []
    assert not fake_backend.running("sandbox")


def test_exec_in_a_service_masks_its_secrets_and_reports_exit_codes(site: Site, fake_backend: FakeBackend) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, env={"TOKEN": "t0p-s3cret"})
    run = site.call("exec", service="web", command=["printenv", "TOKEN"])
    assert run["exit_code"] == 0 and "t0p-s3cret" not in run["stdout"] and "****" in run["stdout"], run
    failed = site.call("exec", service="web", command=["exit", "7"])
    assert failed["exit_code"] == 7
    where = site.call("exec", service="web", command=["pwd"], workdir="/tmp", env={"X": "1"})
    assert "/tmp" in where["stdout"]
    slow = site.call("exec", service="web", command=["sleep", "30"], timeout_s=1)
    assert slow["timed_out"] is True and slow["exit_code"] is None


def test_exec_needs_exactly_one_running_target(site: Site, fake_backend: FakeBackend) -> None:
    neither = site.call("exec", command=["true"])
    assert neither["error"]["code"] == "invalid_input"
    assert site.call("exec", service="nope", command=["true"])["error"]["code"] == "not_found"
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    site.call("stop_service", service="web")
    stopped = site.call("exec", service="web", command=["true"])
    assert stopped["error"]["code"] == "invalid_input", stopped
    assert site.call("exec", service="web", command=[])["error"]["code"] == "invalid_input"


def test_sandbox_quota_and_bad_image(site: Site, fake_backend: FakeBackend) -> None:
    refused = site.call("create_sandbox", name="box", image="elsewhere.test/x:1")
    assert refused["error"]["code"] == "image_not_allowed"
    big = site.call("create_sandbox", name="box", memory_mb=10**6)
    assert big["error"]["code"] == "invalid_input", big
    assert not fake_backend.workloads


def test_sandbox_ttl_and_names(site: Site, fake_backend: FakeBackend) -> None:
    too_long = site.call("create_sandbox", name="box", ttl_s=10**7)
    assert too_long["error"]["code"] == "invalid_input", too_long
    site.call("create_sandbox", name="box")
    assert site.call("create_sandbox", name="box")["error"]["code"] == "conflict"
    assert site.call("delete_sandbox", sandbox="nope", confirm=True)["error"]["code"] == "not_found"
    fake_backend.crash(fake_backend.running("sandbox")[0].id, 137)
    dead = site.call("exec", sandbox="box", command=["true"])
    assert dead["error"]["code"] == "invalid_input", dead
