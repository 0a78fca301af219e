"""Putting data back into a stopped Redis's volume and into a service volume, including after a crash mid-way."""

from __future__ import annotations

from pathlib import Path

from orchestrator.backup_sources import clear_and_replace, settle_redis_files, swap_redis_files


def test_swap_installs_the_rdb_as_aof_base_and_dump(tmp_path: Path) -> None:
    mount = tmp_path / "vol"
    (mount / "appendonlydir").mkdir(parents=True)
    (mount / "appendonlydir" / "appendonly.aof.3.incr.aof").write_text("old")
    (mount / "dump.rdb").write_bytes(b"old-rdb")
    rdb = tmp_path / "backup.rdb"
    rdb.write_bytes(b"REDIS0011-new")

    swap_redis_files(mount, rdb)

    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir", "dump.rdb"]
    aof = mount / "appendonlydir"
    assert sorted(p.name for p in aof.iterdir()) == ["appendonly.aof.1.base.rdb", "appendonly.aof.manifest"]
    assert (aof / "appendonly.aof.1.base.rdb").read_bytes() == b"REDIS0011-new"
    assert (aof / "appendonly.aof.manifest").read_text() == "file appendonly.aof.1.base.rdb seq 1 type b\n"
    assert (mount / "dump.rdb").read_bytes() == b"REDIS0011-new"
    assert (mount / "dump.rdb").stat().st_mode & 0o777 == 0o600


def test_settle_puts_the_old_aof_back_after_a_swap_died_between_renames(tmp_path: Path) -> None:
    (tmp_path / "appendonlydir.ah-old").mkdir()
    (tmp_path / "appendonlydir.ah-old" / "appendonly.aof.manifest").write_text("old manifest")
    (tmp_path / "appendonlydir.ah-new").mkdir()
    (tmp_path / "dump.rdb.ah-new").write_bytes(b"partial")

    settle_redis_files(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonlydir"]
    assert (tmp_path / "appendonlydir" / "appendonly.aof.manifest").read_text() == "old manifest"


def test_settle_drops_the_old_aof_once_the_new_one_is_in_place(tmp_path: Path) -> None:
    (tmp_path / "appendonlydir").mkdir()
    (tmp_path / "appendonlydir.ah-old").mkdir()
    settle_redis_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonlydir"]


def test_clear_and_replace_leaves_exactly_the_staged_tree(tmp_path: Path) -> None:
    (tmp_path / "stale.txt").write_text("stale")
    (tmp_path / "olddir").mkdir()
    (tmp_path / "olddir" / "x").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "olddir")
    staged = tmp_path / ".ah-restore-rs_1"
    (staged / "sub").mkdir(parents=True)
    (staged / "sub" / "note.txt").write_text("hello")
    (staged / "top.bin").write_bytes(b"\0\1")

    clear_and_replace(tmp_path, staged)

    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["sub", "sub/note.txt", "top.bin"]
    assert (tmp_path / "sub" / "note.txt").read_text() == "hello"
