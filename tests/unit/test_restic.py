"""The restic wrapper against a real local repository, and a fast, clear error for an unreachable S3 target."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backups.restic import ResticRepo
from orchestrator.errors import AgentHostError, BackupTargetUnavailable, InvalidInput
from orchestrator.settings import Settings

pytestmark = pytest.mark.anyio


async def test_local_repository_backs_up_finds_restores_and_forgets(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    repo = ResticRepo(settings, "t_1", "local", "a-long-repository-password")
    await repo.ensure()
    await repo.ensure()  # the second time it exists already
    assert (tmp_path / "data" / "restic" / "t_1" / "config").is_file()

    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("alpha")
    (source / "b.bin").write_bytes(bytes(range(256)) * 100)
    snapshot, size = await repo.backup(source, ["ah:bk_1", "ah-volume:data"])
    assert size == 5 + 25600

    found = await repo.snapshots("ah:bk_1")
    assert [s.id for s in found] == [snapshot] and "ah-volume:data" in found[0].tags
    assert await repo.snapshots("ah:bk_other") == []

    out = settings.backup_staging_dir / "rs_1"
    out.mkdir(parents=True)
    await repo.restore(snapshot, out)
    assert (out / "sub" / "a.txt").read_text() == "alpha"
    assert (out / "b.bin").read_bytes() == bytes(range(256)) * 100

    # restic follows links where it writes: it never writes outside an operation's staging directory.
    for elsewhere in (tmp_path / "out", settings.backup_staging_dir, out / "sub"):
        with pytest.raises(AgentHostError, match="refusing to restore"):
            await repo.restore(snapshot, elsewhere)
    assert not (tmp_path / "out").exists()

    await repo.forget(snapshot)
    assert await repo.snapshots("ah:bk_1") == []


async def test_a_wrong_password_does_not_open_the_repository(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    known: set[str] = set()
    await ResticRepo(settings, "t_1", "local", "right-password", known).ensure()
    assert known == {str(settings.restic_local_dir / "t_1")}
    # A process that has not opened the repository yet (a fresh cache) asks restic, which refuses the password.
    with pytest.raises(AgentHostError, match="wrong password|no key found") as err:
        await ResticRepo(settings, "t_1", "local", "wrong-password").ensure()
    assert err.value.code == "internal" and err.value.message.startswith("open backup repository")


async def test_ensure_asks_restic_once_per_repository_it_was_told_exists(tmp_path: Path) -> None:
    known: set[str] = set()
    await ResticRepo(Settings(data_dir=tmp_path), "t_1", "local", "pw", known).ensure()
    # restic is gone: only the shared cache can answer, and it does.
    gone = Settings(data_dir=tmp_path, restic_bin=str(tmp_path / "no-restic"))
    await ResticRepo(gone, "t_1", "local", "pw", known).ensure()
    with pytest.raises(AgentHostError, match="no-restic is not installed"):
        await ResticRepo(gone, "t_1", "local", "pw").ensure()


async def test_an_unreachable_s3_endpoint_fails_fast_and_clearly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    # No restic to run: the answer comes from the probe, before restic (which retries for a minute) is asked.
    settings = Settings(
        data_dir=tmp_path, backup_s3_endpoint=f"http://127.0.0.1:{port}", restic_bin=str(tmp_path / "no-restic")
    )
    repo = ResticRepo(settings, "t_1", "s3", "pw")
    with pytest.raises(BackupTargetUnavailable) as err:
        await repo.ensure()
    assert f"127.0.0.1:{port}" in err.value.message and err.value.code == "backup_target_unavailable"


def test_s3_without_configuration_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no S3 backup target"):
        ResticRepo(Settings(data_dir=tmp_path), "t_1", "s3", "pw")
