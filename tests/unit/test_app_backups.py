"""Backups of volumes through the REST face, over the in-memory engine whose volumes are local directories
(restic runs for real, into the local target under the data dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends.base import ExecResult, ExecSpec, WorkloadSpec
from orchestrator.settings import Settings
from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    """These tests read the finished backup from the call's own answer. restic runs for real and derives its
    key with scrypt on every run: in CI, beside the e2e runs at the lowest priority, a backup once took more
    than the suite's 5 s wait, and the answer said it was still running."""
    return app_settings.model_copy(update={"wait_timeout_s": 120})


def _volume(fake: FakeBackend, name: str) -> Path:
    assert fake.volume_root is not None
    (found,) = [v for v in fake.volumes if v.endswith(f"-{name}")]
    return fake.volume_root / found


def test_where_volumes_live_on_nodes_a_local_repository_is_refused_with_the_way_out(site: Site) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, volumes=[{"name": "data", "path": "/data"}])
    refused = site.call("create_backup", volume="data")
    assert refused["error"]["code"] == "invalid_input", refused
    assert "target='s3'" in refused["error"]["hint"]


def test_backup_and_restore_a_volume(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.name = "docker"  # volumes on this host: backups may read them
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, volumes=[{"name": "data", "path": "/data"}])
    assert svc["status"] == "running", svc
    (_volume(fake_backend, "data") / "kept.txt").write_text("version 1")
    made = site.call("create_backup", volume="data")
    assert made["status_code"] == 200 and made["status"] == "complete", made
    assert fake_backend.workloads[svc["id"]].state == "running"  # paused for the snapshot, then resumed
    listed = site.call("list_backups")["backups"]
    assert [b["id"] for b in listed] == [made["id"]]
    (_volume(fake_backend, "data") / "kept.txt").write_text("version 2")
    unconfirmed = site.call("restore_backup", backup_id=made["id"])
    assert unconfirmed["error"]["code"] == "confirmation_required"
    restored = site.call("restore_backup", backup_id=made["id"], confirm=True)
    assert restored["status_code"] == 200, restored
    assert (_volume(fake_backend, "data") / "kept.txt").read_text() == "version 1"
    assert site.call("delete_backup", backup_id=made["id"], confirm=True)["status_code"] == 200
    assert site.call("list_backups")["backups"] == []
    assert site.call("delete_backup", backup_id=made["id"], confirm=True)["error"]["code"] == "not_found"


def test_a_backup_of_what_does_not_exist_is_refused(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.name = "docker"
    assert site.call("create_backup", volume="nope")["error"]["code"] == "not_found"
    assert site.call("create_backup", database="nope")["error"]["code"] == "not_found"
    assert site.call("create_backup")["error"]["code"] == "invalid_input"


def test_backup_and_restore_a_postgres_database(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.name = "docker"
    seen: list[str] = []

    async def postgres_tools(workload: WorkloadSpec, spec: ExecSpec) -> ExecResult | None:
        """pg_dump writes its file where the script says (in the data volume); pg_restore is noted."""
        script = spec.argv[-1]
        env = spec.env or {}
        if "pg_dump" in script:
            (mount,) = [v for v in workload.volumes if env["AH_DIR"].startswith(v.path)]
            assert fake_backend.volume_root is not None
            folder = fake_backend.volume_root / mount.name / env["AH_DIR"][len(mount.path) :].lstrip("/")
            folder.mkdir(parents=True)
            (folder / "postgres.dump").write_bytes(b"PGDMP fake dump")
            seen.append("dump")
        elif "pg_restore" in script:
            seen.append("restore")
        return (
            None
            if "pg_" not in script
            else ExecResult(exit_code=0, stdout="", stderr="", truncated=False, timed_out=False, duration_ms=1)
        )

    fake_backend.on_exec = postgres_tools
    db = site.call("create_database", name="main", engine="postgres")
    assert db["status"] == "running", db
    made = site.call("create_backup", database="main")
    assert made["status_code"] == 200 and made["status"] == "complete", made
    assert seen == ["dump"]
    restored = site.call("restore_backup", backup_id=made["id"], confirm=True)
    assert restored["status_code"] == 200, restored
    assert seen == ["dump", "restore"]
    assert site.call("get_database", database="main")["status"] == "running"
    copy = site.call("restore_backup", backup_id=made["id"], name="copy", confirm=True)
    assert copy["status_code"] == 200, copy
    assert {d["name"] for d in site.call("list_databases")["databases"]} == {"main", "copy"}


def test_backup_and_restore_a_redis_database(site: Site, fake_backend: FakeBackend) -> None:
    fake_backend.name = "docker"
    saves = 0

    def ok(stdout: str) -> ExecResult:
        return ExecResult(exit_code=0, stdout=stdout, stderr="", truncated=False, timed_out=False, duration_ms=1)

    async def redis_cli(workload: WorkloadSpec, spec: ExecSpec) -> ExecResult | None:
        """INFO and BGSAVE as Redis answers them; a save writes dump.rdb into the data volume."""
        nonlocal saves
        if spec.argv[0] != "redis-cli":
            return None
        if "INFO" in spec.argv:
            fields = {"rdb_saves": saves, "rdb_bgsave_in_progress": 0, "rdb_last_bgsave_status": "ok"}
            return ok("# Persistence\r\n" + "".join(f"{k}:{v}\r\n" for k, v in fields.items()))
        if "BGSAVE" in spec.argv:
            assert fake_backend.volume_root is not None
            (fake_backend.volume_root / workload.volumes[0].name / "dump.rdb").write_bytes(b"REDIS0011 fake")
            saves += 1
            return ok("Background saving started\n")
        return ok("")

    fake_backend.on_exec = redis_cli
    db = site.call("create_database", name="cache", engine="redis")
    assert db["status"] == "running", db
    made = site.call("create_backup", database="cache")
    assert made["status_code"] == 200 and made["status"] == "complete", made
    assert saves == 1
    volume = fake_backend.workloads[db["id"]].spec.volumes[0].name
    assert fake_backend.volume_root is not None
    (fake_backend.volume_root / volume / "dump.rdb").write_bytes(b"REDIS0011 newer")
    restored = site.call("restore_backup", backup_id=made["id"], confirm=True)
    assert restored["status_code"] == 200, restored
    assert (fake_backend.volume_root / volume / "dump.rdb").read_bytes() == b"REDIS0011 fake"
    assert site.call("get_database", database="cache")["status"] == "running"
