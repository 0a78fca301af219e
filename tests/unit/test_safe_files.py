"""The no-follow file primitives: a link or a special file a tenant planted is refused or removed as itself,
and nothing behind it is ever read, written, re-owned or removed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backups.files import (
    copy_out,
    copy_tree_in,
    exists,
    open_dir,
    open_root,
    owner_of,
    remove,
    remove_all,
    write_file,
)
from orchestrator.errors import UnsafePath

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to other users needs root")
Snapshot = dict[str, tuple[int, int, int, int, str]]


def snapshot(top: Path) -> Snapshot:
    """Every entry below ``top`` (links not followed): mode, owner, mtime and content or link target."""
    found: Snapshot = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(dirpath, name)
            st = path.lstat()
            data = os.readlink(path) if path.is_symlink() else path.read_text() if path.is_file() else ""
            found[str(path.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, data)
    st = top.lstat()
    found["."] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, "")
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A host directory a tenant would love root to write into; it must look the same after every test."""
    top = tmp_path / "outside"
    (top / "inner").mkdir(parents=True)
    (top / "secret").write_text("host secret\n")
    (top / "inner" / "file").write_text("host file\n")
    before = snapshot(top)
    yield top
    assert snapshot(top) == before


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    top = tmp_path / "volume"
    top.mkdir()
    return top


def test_open_dir_refuses_a_link_and_a_file_where_a_directory_belongs(volume: Path, outside: Path) -> None:
    (volume / "link").symlink_to(outside)
    (volume / "file").write_text("x")
    with open_root(volume) as root:
        for name, what in (("link", "a symbolic link where"), ("file", "a file where a directory belongs")):
            for create in (None, (0, 0)):
                with pytest.raises(UnsafePath) as err, open_dir(root, name, create=create):
                    pass
                assert what in err.value.message and name in err.value.message
                assert err.value.code == "unsafe_path" and "remove" in err.value.hint
        with pytest.raises(FileNotFoundError), open_dir(root, "missing"):
            pass


@as_root
def test_open_dir_makes_a_missing_directory_with_owner_and_mode(volume: Path) -> None:
    with open_root(volume) as root, open_dir(root, "made", create=(10001, 10002), mode=0o750) as fd:
        assert owner_of(fd) == (10001, 10002)
    st = (volume / "made").lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, 10002, 0o750)


def test_copy_out_reads_only_a_regular_file(volume: Path, outside: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    (volume / "data").write_text("tenant data")
    (volume / "link").symlink_to(outside / "secret")
    (volume / "dirlink").symlink_to(outside)
    (volume / "sub").mkdir()
    os.mkfifo(volume / "fifo")
    with open_root(volume) as root:
        assert copy_out(root, "data", staging / "copy") == len("tenant data")
        for name, what in (
            ("link", "symbolic link"),
            ("dirlink", "symbolic link"),
            ("sub", "directory"),
            ("fifo", "special file"),
        ):  # the FIFO must not hang the control plane either
            with pytest.raises(UnsafePath, match=f"'{name}' in the volume is a {what} where a file belongs"):
                copy_out(root, name, staging / name)
    assert (staging / "copy").read_text() == "tenant data"
    assert stat.S_IMODE((staging / "copy").stat().st_mode) == 0o600
    assert sorted(p.name for p in staging.iterdir()) == ["copy"]


@as_root
def test_write_file_creates_only_a_new_file_and_never_writes_through_a_link(
    volume: Path, outside: Path, tmp_path: Path
) -> None:
    source = tmp_path / "staged"
    source.write_bytes(b"staged bytes")
    (volume / "link").symlink_to(outside / "secret")
    (volume / "dangling").symlink_to(outside / "new-file")
    with open_root(volume) as root:
        write_file(root, "from-path", source, (10001, 10001))
        write_file(root, "from-bytes", b"bytes", (10001, 10002), mode=0o640)
        for name in ("link", "dangling", "from-path"):
            with pytest.raises(UnsafePath):
                write_file(root, name, b"evil", (0, 0))
    assert (volume / "from-path").read_bytes() == b"staged bytes"
    st = (volume / "from-bytes").lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, 10002, 0o640)
    assert not (outside / "new-file").exists()


def test_remove_takes_links_themselves_and_trees_without_following_inner_links(volume: Path, outside: Path) -> None:
    (volume / "link").symlink_to(outside)
    (volume / "tree" / "deep").mkdir(parents=True)
    (volume / "tree" / "deep" / "back").symlink_to(outside)
    (volume / "tree" / "deep" / "file-link").symlink_to(outside / "secret")
    (volume / "plain").write_text("x")
    with open_root(volume) as root:
        assert remove(root, "link") and remove(root, "tree") and remove(root, "plain")
        assert not remove(root, "missing")
        assert not exists(root, "link")
    assert list(volume.iterdir()) == []


def test_remove_all_empties_a_directory_full_of_links(volume: Path, outside: Path) -> None:
    (volume / "a").symlink_to(outside)
    (volume / "b").symlink_to(outside / "secret")
    (volume / "c").mkdir()
    (volume / "c" / "d").symlink_to(outside / "inner")
    (volume / ".hidden").write_text("x")
    with open_root(volume) as root:
        remove_all(root)
    assert list(volume.iterdir()) == []


@as_root
def test_copy_tree_in_keeps_owners_modes_times_links_and_fifos(volume: Path, outside: Path, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    (staged / "sub" / "deeper").mkdir(parents=True)
    (staged / "sub" / "note.txt").write_text("hello")
    (staged / "sub" / "deeper" / "x").write_text("x")
    (staged / "top.bin").write_bytes(b"\0\1")
    (staged / "to-host").symlink_to(outside)  # a link the tenant had: restored as a link, never followed
    (staged / "relative").symlink_to("sub/note.txt")
    os.mkfifo(staged / "pipe")
    os.chown(staged / "sub", 10001, 10001)
    os.chmod(staged / "sub", 0o750)
    os.chown(staged / "sub" / "note.txt", 10001, 10002)
    os.chmod(staged / "sub" / "note.txt", 0o4640)  # set-id bits survive the chown that comes first
    os.chown(staged / "to-host", 10003, 10003, follow_symlinks=False)
    os.utime(staged / "top.bin", ns=(1_000_000_000, 2_000_000_123))
    before = snapshot(staged)

    with open_root(volume) as root:
        copy_tree_in(staged, root)

    got = snapshot(volume)
    assert {k: v for k, v in got.items() if k != "."} == {k: v for k, v in before.items() if k != "."}
    assert (volume / "to-host").is_symlink() and os.readlink(volume / "to-host") == str(outside)


def test_copy_tree_in_refuses_a_name_that_is_already_taken(volume: Path, outside: Path, tmp_path: Path) -> None:
    for kind in ("dir", "file", "link"):
        staged = tmp_path / f"staged-{kind}"
        staged.mkdir()
        if kind == "dir":
            (staged / "name").mkdir()
            (staged / "name" / "inner").write_text("x")
        elif kind == "file":
            (staged / "name").write_text("x")
        else:
            (staged / "name").symlink_to("anywhere")
        (volume / "name").symlink_to(outside)  # planted after the volume was emptied
        with open_root(volume) as root, pytest.raises(UnsafePath, match="where a new (entry|file) belongs"):
            copy_tree_in(staged, root)
        (volume / "name").unlink()
