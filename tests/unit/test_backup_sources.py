"""Files in and out of database and service volumes, including after a crash mid-way, and with a link planted
at every name the platform touches: root never follows one out of the volume."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backups.sources import (
    clear_and_replace,
    copy_dump_out,
    copy_rdb_out,
    place_dump,
    remove_dump,
    settle_redis_files,
    swap_redis_files,
)
from orchestrator.errors import AgentHostError, UnsafePath

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to other users needs root")


def _tree(top: Path) -> dict[str, tuple[int, int, int, str]]:
    found = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(dirpath, name)
            st = path.lstat()
            data = os.readlink(path) if path.is_symlink() else path.read_text() if path.is_file() else ""
            found[str(path.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, data)
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A host directory outside the volume: whatever the volume holds, it must look the same afterwards."""
    top = tmp_path / "outside"
    (top / "appendonlydir").mkdir(parents=True)
    (top / "appendonlydir" / "appendonly.aof.manifest").write_text("host manifest\n")
    (top / "postgres.dump").write_text("host file posing as a dump\n")
    (top / "dump.rdb").write_text("host file posing as an rdb\n")
    (top / "rs_1").mkdir()
    before = _tree(top)
    mode = top.stat().st_mode
    yield top
    assert _tree(top) == before and top.stat().st_mode == mode


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    top = tmp_path / "vol"
    top.mkdir()
    if os.geteuid() == 0:
        os.chown(top, 999, 999)  # the engine's own user owns its volume
    return top


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    top = tmp_path / "staging" / "op"
    top.mkdir(parents=True, mode=0o700)
    return top


# -- Redis ----------------------------------------------------------------------------------------


@as_root
def test_swap_installs_the_rdb_as_aof_base_and_dump_owned_by_the_engine(mount: Path, staging: Path) -> None:
    (mount / "appendonlydir").mkdir()
    (mount / "appendonlydir" / "appendonly.aof.3.incr.aof").write_text("old")
    (mount / "dump.rdb").write_bytes(b"old-rdb")
    rdb = staging / "dump.rdb"
    rdb.write_bytes(b"REDIS0011-new")

    swap_redis_files(mount, rdb)

    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir", "dump.rdb"]
    aof = mount / "appendonlydir"
    assert sorted(p.name for p in aof.iterdir()) == ["appendonly.aof.1.base.rdb", "appendonly.aof.manifest"]
    assert (aof / "appendonly.aof.1.base.rdb").read_bytes() == b"REDIS0011-new"
    assert (aof / "appendonly.aof.manifest").read_text() == "file appendonly.aof.1.base.rdb seq 1 type b\n"
    assert (mount / "dump.rdb").read_bytes() == b"REDIS0011-new"
    assert (mount / "dump.rdb").stat().st_mode & 0o777 == 0o600
    for path in (aof, aof / "appendonly.aof.manifest", mount / "dump.rdb"):
        assert (path.stat().st_uid, path.stat().st_gid) == (999, 999)


def test_swap_replaces_links_at_dump_rdb_and_appendonlydir_without_following_them(
    mount: Path, staging: Path, outside: Path
) -> None:
    (mount / "appendonlydir").symlink_to(outside / "appendonlydir")
    (mount / "dump.rdb").symlink_to(outside / "dump.rdb")
    rdb = staging / "dump.rdb"
    rdb.write_bytes(b"REDIS0011-new")

    swap_redis_files(mount, rdb)

    assert not (mount / "appendonlydir").is_symlink() and not (mount / "dump.rdb").is_symlink()
    assert (mount / "dump.rdb").read_bytes() == b"REDIS0011-new"
    assert (mount / "appendonlydir" / "appendonly.aof.1.base.rdb").read_bytes() == b"REDIS0011-new"
    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir", "dump.rdb"]


def test_swap_fails_cleanly_on_a_link_planted_where_it_stages(mount: Path, staging: Path, outside: Path) -> None:
    rdb = staging / "dump.rdb"
    rdb.write_bytes(b"REDIS0011-new")
    (mount / "dump.rdb").write_bytes(b"old")
    # settle removes leftovers first (the links themselves), so the swap still goes through.
    (mount / "appendonlydir.ah-new").symlink_to(outside / "appendonlydir")
    (mount / "dump.rdb.ah-new").symlink_to(outside / "dump.rdb")
    swap_redis_files(mount, rdb)
    assert (mount / "dump.rdb").read_bytes() == b"REDIS0011-new"
    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir", "dump.rdb"]


def test_settle_puts_the_old_aof_back_after_a_swap_died_between_renames(mount: Path) -> None:
    (mount / "appendonlydir.ah-old").mkdir()
    (mount / "appendonlydir.ah-old" / "appendonly.aof.manifest").write_text("old manifest")
    (mount / "appendonlydir.ah-new").mkdir()
    (mount / "dump.rdb.ah-new").write_bytes(b"partial")

    settle_redis_files(mount)

    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir"]
    assert (mount / "appendonlydir" / "appendonly.aof.manifest").read_text() == "old manifest"


def test_settle_drops_the_old_aof_once_the_new_one_is_in_place(mount: Path) -> None:
    (mount / "appendonlydir").mkdir()
    (mount / "appendonlydir.ah-old").mkdir()
    settle_redis_files(mount)
    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir"]


def test_settle_removes_planted_links_themselves(mount: Path, outside: Path) -> None:
    (mount / "appendonlydir").mkdir()
    for name in ("appendonlydir.ah-old", "appendonlydir.ah-new"):
        (mount / name).symlink_to(outside / "appendonlydir")
    (mount / "dump.rdb.ah-new").symlink_to(outside / "dump.rdb")
    settle_redis_files(mount)
    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir"]


def test_the_rdb_is_copied_out_only_when_it_is_a_regular_file(mount: Path, staging: Path, outside: Path) -> None:
    (mount / "dump.rdb").write_bytes(b"REDIS0011")
    assert copy_rdb_out(mount, staging).read_bytes() == b"REDIS0011"
    (staging / "dump.rdb").unlink()
    (mount / "dump.rdb").unlink()
    (mount / "dump.rdb").symlink_to(outside / "dump.rdb")  # would exfiltrate a host file into the backup
    with pytest.raises(UnsafePath, match="dump.rdb"):
        copy_rdb_out(mount, staging)
    (mount / "dump.rdb").unlink()
    with pytest.raises(AgentHostError, match="no dump.rdb"):
        copy_rdb_out(mount, staging)
    assert list(staging.iterdir()) == []


# -- Postgres -------------------------------------------------------------------------------------


def test_the_dump_is_copied_out_only_through_real_directories_to_a_regular_file(
    mount: Path, staging: Path, outside: Path
) -> None:
    (mount / "ah-dumps" / "rs_1").mkdir(parents=True)
    (mount / "ah-dumps" / "rs_1" / "postgres.dump").write_text("PGDMP")
    assert copy_dump_out(mount, "rs_1", staging).read_text() == "PGDMP"
    (staging / "postgres.dump").unlink()

    # A link at each position: the dump file, its directory, ah-dumps.
    (mount / "ah-dumps" / "rs_1" / "postgres.dump").unlink()
    (mount / "ah-dumps" / "rs_1" / "postgres.dump").symlink_to(outside / "postgres.dump")
    with pytest.raises(UnsafePath, match="postgres.dump"):
        copy_dump_out(mount, "rs_1", staging)
    (mount / "ah-dumps" / "rs_2").symlink_to(outside)
    with pytest.raises(UnsafePath, match="rs_2"):
        copy_dump_out(mount, "rs_2", staging)
    (mount / "ah-dumps").rename(mount / "old-dumps")
    (mount / "ah-dumps").symlink_to(outside)
    with pytest.raises(UnsafePath, match="ah-dumps"):
        copy_dump_out(mount, "rs_1", staging)
    (mount / "ah-dumps").unlink()
    with pytest.raises(AgentHostError, match="left no ah-dumps/rs_1/postgres.dump"):
        copy_dump_out(mount, "rs_1", staging)
    assert list(staging.iterdir()) == []


@as_root
def test_a_staged_dump_is_placed_for_the_engine_user_and_removed_again(mount: Path, staging: Path) -> None:
    dump = staging / "postgres.dump"
    dump.write_text("PGDMP")
    place_dump(mount, "rs_1", dump)
    placed = mount / "ah-dumps" / "rs_1" / "postgres.dump"
    assert placed.read_text() == "PGDMP"
    for path in (mount / "ah-dumps", mount / "ah-dumps" / "rs_1", placed):
        assert (path.stat().st_uid, path.stat().st_gid) == (999, 999)
    assert placed.stat().st_mode & 0o777 == 0o600
    remove_dump(mount, "rs_1")
    assert list((mount / "ah-dumps").iterdir()) == []


def test_placing_a_dump_refuses_links_at_every_position(mount: Path, staging: Path, outside: Path) -> None:
    dump = staging / "postgres.dump"
    dump.write_text("PGDMP")
    (mount / "ah-dumps").symlink_to(outside)
    with pytest.raises(UnsafePath, match="ah-dumps"):
        place_dump(mount, "rs_1", dump)
    (mount / "ah-dumps").unlink()
    (mount / "ah-dumps").mkdir()
    (mount / "ah-dumps" / "rs_1").symlink_to(outside / "rs_1")
    with pytest.raises(UnsafePath, match="rs_1"):
        place_dump(mount, "rs_1", dump)
    (mount / "ah-dumps" / "rs_2").mkdir()
    (mount / "ah-dumps" / "rs_2" / "postgres.dump").symlink_to(outside / "postgres.dump")
    with pytest.raises(UnsafePath, match="postgres.dump"):
        place_dump(mount, "rs_2", dump)


def test_removing_a_dump_removes_links_themselves_and_leaves_a_linked_ah_dumps_alone(
    mount: Path, outside: Path
) -> None:
    (mount / "ah-dumps").mkdir()
    (mount / "ah-dumps" / "rs_1").symlink_to(outside / "rs_1")
    remove_dump(mount, "rs_1")
    assert list((mount / "ah-dumps").iterdir()) == []
    (mount / "ah-dumps").rmdir()
    (mount / "ah-dumps").symlink_to(outside)
    remove_dump(mount, "rs_1")  # outside/rs_1 is the host's: it stays
    assert (mount / "ah-dumps").is_symlink()
    remove_dump(mount, "missing")


# -- volumes --------------------------------------------------------------------------------------


@as_root
def test_clear_and_replace_leaves_exactly_the_staged_tree_and_keeps_the_root(mount: Path, staging: Path) -> None:
    (mount / "stale.txt").write_text("stale")
    (mount / "olddir").mkdir()
    (mount / "olddir" / "x").write_text("x")
    (mount / "link").symlink_to(mount / "olddir")
    (staging / "sub").mkdir()
    (staging / "sub" / "note.txt").write_text("hello")
    (staging / "top.bin").write_bytes(b"\0\1")
    os.chmod(mount, 0o751)

    clear_and_replace(mount, staging)

    assert sorted(str(p.relative_to(mount)) for p in mount.rglob("*")) == ["sub", "sub/note.txt", "top.bin"]
    assert (mount / "sub" / "note.txt").read_text() == "hello"
    assert (mount.stat().st_uid, mount.stat().st_mode & 0o7777) == (999, 0o751)
    clear_and_replace(mount, staging, (10001, 10002, 0o700))
    assert (mount.stat().st_uid, mount.stat().st_gid, mount.stat().st_mode & 0o7777) == (10001, 10002, 0o700)


def test_clear_and_replace_never_follows_a_link_in_the_volume(mount: Path, staging: Path, outside: Path) -> None:
    # Every name the restore writes, and an entry it removes, lead out of the volume.
    for name in ("appendonlydir", "postgres.dump", "dump.rdb", "rs_1"):
        (mount / name).symlink_to(outside / name)
    (mount / "deep").mkdir()
    (mount / "deep" / "back").symlink_to(outside)
    (staging / "appendonlydir").mkdir()
    (staging / "appendonlydir" / "appendonly.aof.manifest").write_text("tenant manifest")
    (staging / "postgres.dump").write_text("tenant dump")
    (staging / "rs_1").mkdir()
    (staging / "rs_1" / "new").write_text("tenant file")
    (staging / "dump.rdb").symlink_to(outside / "dump.rdb")  # the tenant's own link, restored as a link

    clear_and_replace(mount, staging)

    assert (mount / "appendonlydir" / "appendonly.aof.manifest").read_text() == "tenant manifest"
    assert (mount / "postgres.dump").read_text() == "tenant dump"
    assert (mount / "rs_1" / "new").read_text() == "tenant file"
    assert os.readlink(mount / "dump.rdb") == str(outside / "dump.rdb")
    assert sorted(p.name for p in mount.iterdir()) == ["appendonlydir", "dump.rdb", "postgres.dump", "rs_1"]
