"""The restic job's program for backends without local volumes (``backups.in_volume``), run here over a volume
in a temporary directory and a stand-in restic that copies a prepared snapshot into its target: restores own,
replace and install Redis files as the volume's owner expects, and a link a tenant planted where a directory
or a dump belongs stops the job without a write outside the volume."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orchestrator.backups import in_volume

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the job re-owns files, which needs root")

OWNER = (4242, 4343)


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    vol = tmp_path / "vol"
    vol.mkdir()
    os.chown(vol, *OWNER)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    restic = tmp_path / "restic"
    # Stands in for `restic --no-cache restore <id> --target .`: the prepared snapshot lands in the target.
    restic.write_text('#!/bin/sh\n[ "$2" = restore ] || exit 9\ncp -a "$FAKE_SNAPSHOT"/. .\nexit "${FAKE_EXIT:-0}"\n')
    restic.chmod(0o755)
    monkeypatch.setattr(in_volume, "ROOT", str(vol))
    monkeypatch.setattr(in_volume, "RESTIC", str(restic))
    monkeypatch.setenv("FAKE_SNAPSHOT", str(snapshot))
    monkeypatch.chdir(tmp_path)
    return vol


def _snapshot(vol: Path) -> Path:
    return vol.parent / "snapshot"


def _owners(top: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in [top, *top.rglob("*")]}


def test_a_restored_dump_is_owned_by_the_volume_s_owner_and_replaces_what_was_there(volume: Path) -> None:
    (_snapshot(volume) / "sub").mkdir()
    (_snapshot(volume) / "dump.sql").write_text("rows")
    (_snapshot(volume) / "sub" / "more").write_text("more")
    (volume / "ah-restore" / "op").mkdir(parents=True)
    (volume / "ah-restore" / "op" / "stale").write_text("from an earlier try")

    in_volume.main(["restore", "ah-restore/op", "snap", "own"])

    done = volume / "ah-restore" / "op"
    assert sorted(p.relative_to(done).as_posix() for p in done.rglob("*")) == ["dump.sql", "sub", "sub/more"]
    assert (done / "dump.sql").read_text() == "rows"
    assert _owners(done) == {OWNER}


def test_a_replace_leaves_the_volume_holding_exactly_the_snapshot_with_its_root_s_owner_and_mode(volume: Path) -> None:
    (_snapshot(volume) / "app").mkdir()
    (_snapshot(volume) / "app" / "note").write_text("restored")
    (_snapshot(volume) / "top.txt").write_text("top")
    (volume / "old").mkdir()
    (volume / "old" / "file").write_text("gone after")
    (volume / "old.txt").write_text("gone after")

    in_volume.main(["restore", ".ah-restore", "snap", "replace", json.dumps([1000, 1001, 0o750])])

    assert sorted(p.name for p in volume.iterdir()) == ["app", "top.txt"]
    assert (volume / "app" / "note").read_text() == "restored"
    st = volume.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o750)


def test_a_replace_staged_below_the_top_is_refused(volume: Path) -> None:
    with pytest.raises(SystemExit, match="top of the volume"):
        in_volume.main(["restore", "deep/.ah-restore", "snap", "replace", "null"])


def test_a_redis_restore_installs_the_dump_as_the_append_only_base_and_drops_the_old_files(volume: Path) -> None:
    (_snapshot(volume) / "dump.rdb").write_bytes(b"REDIS0011 restored")
    aof = volume / "appendonlydir"
    aof.mkdir()
    (aof / "appendonly.aof.7.incr.aof").write_text("old writes")
    (volume / "dump.rdb").write_bytes(b"REDIS0011 old")

    in_volume.main(["restore", ".ah-restore", "snap", "redis"])

    assert sorted(p.name for p in volume.iterdir()) == ["appendonlydir", "dump.rdb"]
    assert sorted(p.name for p in aof.iterdir()) == ["appendonly.aof.1.base.rdb", "appendonly.aof.manifest"]
    assert (aof / "appendonly.aof.1.base.rdb").read_bytes() == b"REDIS0011 restored"
    assert (aof / "appendonly.aof.manifest").read_text() == "file appendonly.aof.1.base.rdb seq 1 type b\n"
    assert (volume / "dump.rdb").read_bytes() == b"REDIS0011 restored"
    assert _owners(aof) == {OWNER} and _owners(volume / "dump.rdb") == {OWNER}


def test_attack_a_link_planted_where_a_directory_belongs_stops_the_restore_before_any_write(
    volume: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (volume / "ah-restore").symlink_to(outside)
    (_snapshot(volume) / "dump.sql").write_text("rows")

    with pytest.raises(OSError):
        in_volume.main(["restore", "ah-restore/op", "snap", "own"])
    assert list(outside.iterdir()) == []
    with pytest.raises(SystemExit, match="bad path"):
        in_volume.main(["restore", "ah-restore/../../outside", "snap", "own"])


def test_attack_a_dump_that_is_a_link_is_not_followed_into_the_node(volume: Path, tmp_path: Path) -> None:
    secret = tmp_path / "node-secret"
    secret.write_text("the node's")
    (_snapshot(volume) / "dump.rdb").symlink_to(secret)

    with pytest.raises(OSError):
        in_volume.main(["restore", ".ah-restore", "snap", "redis"])
    assert not (volume / "dump.rdb").exists() and not (volume / "appendonlydir").exists()


def test_a_failed_restic_fails_the_job_and_an_unknown_step_is_refused(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "3")
    with pytest.raises(SystemExit) as failed:
        in_volume.main(["restore", "ah-restore/op", "snap", "own"])
    assert failed.value.code == 3
    monkeypatch.setenv("FAKE_EXIT", "0")
    with pytest.raises(SystemExit, match="unknown step"):
        in_volume.main(["restore", "ah-restore/op", "snap", "mystery"])
    with pytest.raises(SystemExit, match="unknown operation"):
        in_volume.main(["copy", "ah-restore/op"])


def test_a_backup_reports_the_volume_root_and_runs_restic_in_the_directory_with_its_tags(
    volume: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (volume / "app").mkdir()
    os.chmod(volume, 0o751)
    ran: list[tuple[str, ...]] = []

    def restic(*args: str) -> None:  # in place of the exec of restic, which would replace this process
        ran.append((os.getcwd(), *args))
        raise SystemExit(0)

    monkeypatch.setattr(in_volume, "restic", restic)
    with pytest.raises(SystemExit):
        in_volume.main(["backup", "app", json.dumps(["db:x", "op:y"]), "."])
    first = capfd.readouterr().out.splitlines()[0]
    assert json.loads(first) == {"root": [*OWNER, 0o751]}
    assert ran == [
        (str(volume / "app"), "backup", "--json", "--host", "agenthost", "--tag", "db:x", "--tag", "op:y", ".")
    ]
