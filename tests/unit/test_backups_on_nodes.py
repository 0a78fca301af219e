"""restic beside the data (backends whose volumes live on nodes): what the job gets, and what it never shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.backends.base import OneShotResult
from orchestrator.backups.remote import RemoteRestic
from orchestrator.backups.restic import ResticRepo
from orchestrator.errors import AgentHostError, BackupTargetUnavailable, InvalidInput
from orchestrator.settings import Settings
from tests.backend_protocol import sample_spec
from tests.fakes import FakeBackend

pytestmark = pytest.mark.anyio

PASSWORD, S3_SECRET = "repo-pass-7f1c2e", "s3-secret-93ab"
SUMMARY = json.dumps({"message_type": "summary", "snapshot_id": "0a1b2c3d", "total_bytes_processed": 4096})


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        backup_s3_endpoint="http://10.0.0.5:9000",
        backup_s3_access_key="AKIA-test",
        backup_s3_secret_key=S3_SECRET,
        backup_timeout_s=120,
    )


def _fake() -> FakeBackend:
    fake = FakeBackend(name="nomad")
    fake.volumes["ah-t1-pgdata"] = {}
    return fake


async def test_the_backup_job_runs_beside_the_volume_with_its_secrets_only_in_env(tmp_path: Path) -> None:
    settings, fake = _settings(tmp_path), _fake()
    out = f'{{"root": [999, 999, 448]}}\nstatus\n{SUMMARY}\n'
    fake.oneshot_results = [OneShotResult(exit_code=0, stdout=out, stderr="")]
    repo = ResticRepo(settings, "t1", "s3", PASSWORD)
    got = await RemoteRestic(settings, fake).backup(repo, "t1", "bk1", "ah-t1-pgdata", "ah-dumps/bk1", ["x"], [])
    assert got == ("0a1b2c3d", 4096, [999, 999, 0o700])
    (spec,) = fake.oneshots
    assert spec.volume is not None and (spec.volume.name, spec.volume.path) == ("ah-t1-pgdata", "/data")
    assert spec.env["RESTIC_PASSWORD"] == PASSWORD and spec.env["AWS_SECRET_ACCESS_KEY"] == S3_SECRET
    assert spec.env["RESTIC_REPOSITORY"] == "s3:http://10.0.0.5:9000/agenthost-backups/t1"
    assert not any(PASSWORD in a or S3_SECRET in a for a in spec.argv)
    assert spec.argv[3:5] == ["backup", "ah-dumps/bk1"] and spec.tenant_id == "t1"
    assert list(spec.binaries) == ["/usr/local/bin/restic"] and spec.cap_add == ["chown", "dac_override", "fowner"]


async def test_a_locked_repository_is_tried_again_and_an_unreachable_one_is_a_clear_error(tmp_path: Path) -> None:
    settings, fake = _settings(tmp_path), _fake()
    locked = OneShotResult(exit_code=1, stdout="", stderr="unable to create lock: repository is already locked")
    down = OneShotResult(exit_code=1, stdout="", stderr="Fatal: dial tcp 10.0.0.5:9000: connection refused")
    fake.oneshot_results = [locked, down]
    repo = ResticRepo(settings, "t1", "s3", PASSWORD)
    with pytest.raises(BackupTargetUnavailable, match="unreachable"):
        await RemoteRestic(settings, fake).restore(
            repo, "t1", "rs1", "ah-t1-pgdata", ".ah-restore-rs1", "abc", ["redis"]
        )
    assert [s.id for s in fake.oneshots] == ["rs1-rs-0", "rs1-rs-1"]


async def test_a_job_past_its_deadline_fails_the_operation(tmp_path: Path) -> None:
    settings, fake = _settings(tmp_path), _fake()
    fake.oneshot_results = [OneShotResult(exit_code=None, stdout="", stderr="")]
    repo = ResticRepo(settings, "t1", "s3", PASSWORD)
    with pytest.raises(AgentHostError, match="did not finish"):
        await RemoteRestic(settings, fake).restore(repo, "t1", "rs1", "ah-t1-pgdata", "ah-dumps/rs1", "abc", ["own"])


def test_nodes_never_get_the_control_planes_local_repository(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="local backup repository"):
        ResticRepo(_settings(tmp_path), "t1", "local", PASSWORD).job_env()


async def test_recovery_removes_only_the_jobs_of_the_dead_operation(tmp_path: Path) -> None:
    fake = FakeBackend({"img"}, name="nomad")
    for job in ("bk1-bk-0", "bk1-bk-1", "bk2-bk-0"):
        labels = {"agenthost.tenant": "t1", "agenthost.kind": "job"}
        await fake.ensure_workload(sample_spec("img", kind="job", id=job, tenant_id="t1", labels=labels))
    await RemoteRestic(_settings(tmp_path), fake).stop_jobs("t1", "bk1")
    assert sorted(fake.workloads) == ["bk2-bk-0"]
