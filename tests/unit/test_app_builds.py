"""Builds through the REST face over the in-memory builder: from a local git repository to a deployed service."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import BuildFailed
from tests.fakes import FakeBackend, FakeBuilder

from .site import Site


@pytest.fixture
def repo(repo_dir: Path) -> Path:
    path = repo_dir / "site"
    path.mkdir()
    (path / "index.html").write_text("hi")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "1"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args], cwd=path, check=True)
    return path


def test_a_build_runs_when_the_control_plane_s_working_directory_is_closed_to_the_build_user(
    site: Site, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root started from its home (mode 0700): git, run as the build user, once failed on its own cwd.
    private = tmp_path / "root-home"
    private.mkdir(mode=0o700)
    monkeypatch.chdir(private)
    build = site.call("build_from_git", git_url=str(repo), name="site", wait=True, wait_timeout_s=30)
    assert build["status"] == "succeeded", build


def test_build_then_deploy_the_build(
    site: Site, repo: Path, fake_backend: FakeBackend, fake_builder: FakeBuilder
) -> None:
    build = site.call("build_from_git", git_url=str(repo), name="site", wait=True, wait_timeout_s=30)
    assert build["status_code"] == 200 and build["status"] == "succeeded", build
    assert site.call("get_build", build_id=build["id"])["status"] == "succeeded"
    assert [b["id"] for b in site.call("list_builds")["builds"]] == [build["id"]]
    logs = site.call("build_logs", build_id=build["id"])
    assert "building" in str(logs)
    fake_backend.images |= fake_builder.images  # the engine runs what the builder made (one host)
    svc = site.call("deploy_service", name="web", build_id=build["id"])
    assert svc["status_code"] == 200 and svc["status"] == "running", svc
    spec = fake_backend.workloads[svc["id"]].spec
    assert spec.image in fake_builder.images and spec.ports == [8080]
    assert site.call("cancel_build", build_id=build["id"])["status"] == "succeeded"


def test_a_failed_build_says_why_and_cannot_be_deployed(site: Site, repo: Path, fake_builder: FakeBuilder) -> None:
    async def broken(tag: str) -> None:
        raise BuildFailed("RUN make: exit 2")

    fake_builder.steps = [broken]
    build = site.call("build_from_git", git_url=str(repo), wait=True, wait_timeout_s=30)
    assert build["status"] == "failed" and "exit 2" in build["error"], build
    refused = site.call("deploy_service", name="web", build_id=build["id"])
    assert refused["error"]["code"] == "invalid_input", refused
    assert site.call("get_build", build_id="bld_nope")["error"]["code"] == "not_found"
    assert site.call("build_from_git", git_url="ftp://example.test/x.git")["error"]["code"] == "invalid_input"


def test_a_running_build_can_be_cancelled(site: Site, repo: Path, fake_builder: FakeBuilder) -> None:
    entered: list[str] = []

    async def slow(tag: str) -> None:
        entered.append(tag)
        await anyio.sleep(30)

    fake_builder.steps = [slow]
    build = site.call("build_from_git", git_url=str(repo))
    site.until(lambda: bool(entered), "the build is in the builder's hands")
    assert site.call("get_build", build_id=build["id"])["status"] == "running"
    cancelled = site.call("cancel_build", build_id=build["id"])
    assert cancelled["status"] == "cancelled", cancelled
