"""File work inside trees a tenant can write, done by root without ever following a link.

Every path inside a tenant's volume is reached one component at a time from an open directory
fd: directories with ``O_DIRECTORY | O_NOFOLLOW``, files with ``O_NOFOLLOW`` and an ``fstat``
that proves a regular file, new entries with ``O_CREAT | O_EXCL | O_NOFOLLOW``, removals with
``unlink``/``shutil.rmtree`` relative to the parent's fd (rmtree's fd-based walk never follows a
link either). A link or a special file where the platform expects a directory or a file is an
``UnsafePath`` error; nothing behind it is read, written, re-owned or removed. Paths outside
tenant trees (the root-owned staging directory) are used as paths.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UnsafePath

__all__ = [
    "Owner",
    "copy_out",
    "copy_tree_in",
    "exists",
    "open_dir",
    "open_root",
    "owner_of",
    "remove",
    "remove_all",
    "write_file",
]

log = logging.getLogger(__name__)

Owner = tuple[int, int]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO must not hang us
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1024 * 1024


def _name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a single path component: {name!r}")
    return name


def _unsafe(name: str, what: str) -> UnsafePath:
    return UnsafePath(
        f"{name!r} in the volume is {what}; the platform does not follow links or special files there",
        f"remove or rename {name!r} in the volume (from a service that mounts it) and try again",
    )


def _kind(parent: int, name: str) -> str:
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except OSError:
        return "something else"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a directory" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else "a special file"


def _open(name: str, flags: int, parent: int, expected: str) -> int:
    try:
        return os.open(_name(name), flags, 0o600, dir_fd=parent)
    except OSError as exc:
        # ELOOP: a link at the last step; ENOTDIR: a link or a file where a directory belongs; EEXIST: taken.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
            raise _unsafe(name, f"{_kind(parent, name)} where {expected} belongs") from exc
        raise


@contextmanager
def open_root(path: Path) -> Iterator[int]:
    """The fd of a volume's root directory (the engine's own, root-owned path leads to it)."""
    fd = os.open(path, _DIR)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def open_dir(parent: int, name: str, create: Owner | None = None, mode: int = 0o700) -> Iterator[int]:
    """A directory below ``parent``; made (owned by ``create``, with ``mode``) when ``create`` is given and it
    is missing. Raises: UnsafePath when the entry is a link or not a directory; FileNotFoundError."""
    made = False
    if create is not None:
        try:
            os.mkdir(_name(name), 0o700, dir_fd=parent)
            made = True
        except FileExistsError:
            pass
    fd = _open(name, _DIR, parent, "a directory")
    try:
        if create is not None:
            os.fchown(fd, *create)
        if made:
            os.fchmod(fd, mode)
        yield fd
    finally:
        os.close(fd)


def owner_of(fd: int) -> Owner:
    st = os.fstat(fd)
    return st.st_uid, st.st_gid


def exists(parent: int, name: str) -> bool:
    """Whether the entry itself exists (a dangling link does)."""
    try:
        os.stat(_name(name), dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_fd(src: int, dst: int) -> None:
    while chunk := os.read(src, _CHUNK):
        _write_all(dst, chunk)


def copy_out(parent: int, name: str, dest: Path) -> int:
    """Copy the regular file ``name`` below ``parent`` to a new file ``dest`` (mode 0600) in a root-owned
    directory. Returns its size. Raises: UnsafePath for a link or anything but a regular file."""
    src = _open(name, _READ, parent, "a file")
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise _unsafe(name, f"{_kind(parent, name)} where a file belongs")
        dst = os.open(dest, _CREATE, 0o600)
        try:
            _copy_fd(src, dst)
            return os.fstat(dst).st_size
        finally:
            os.close(dst)
    finally:
        os.close(src)


def write_file(parent: int, name: str, data: bytes | Path, owner: Owner, mode: int = 0o600) -> None:
    """Create ``name`` below ``parent`` (it must not exist), owned by ``owner``, holding ``data`` or a copy of
    the root-owned file ``data``; synced to disk. Raises: UnsafePath when the name is taken (a link, too)."""
    fd = _open(name, _CREATE, parent, "a new file")
    try:
        os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        if isinstance(data, Path):
            src = os.open(data, _READ)
            try:
                _copy_fd(src, fd)
            finally:
                os.close(src)
        else:
            _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(parent: int, name: str) -> bool:
    """Remove the entry ``name`` below ``parent``: a link itself (never its target), a file, or a directory
    tree. Returns whether there was one."""
    try:
        st = os.stat(_name(name), dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)
    return True


def remove_all(fd: int) -> None:
    """Empty the directory ``fd`` (its entries as ``remove`` removes them)."""
    for name in os.listdir(fd):
        remove(fd, name)


@contextmanager
def _new(parent: int, name: str) -> Iterator[None]:
    try:
        yield
    except FileExistsError as exc:
        raise _unsafe(name, f"{_kind(parent, name)} where a new entry belongs") from exc


def _keep_meta(fd: int, st: os.stat_result) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)  # before fchmod: chown clears set-id bits
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree_in(src: Path, parent: int) -> None:
    """Copy the root-owned tree ``src`` into the directory ``parent``, with owners, modes and times; links are
    made as links (never followed), hard links become copies. Entries may not exist yet below ``parent``.
    Raises: UnsafePath when one does (something wrote the directory meanwhile)."""
    with os.scandir(src) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                with _new(parent, entry.name):
                    os.mkdir(_name(entry.name), 0o700, dir_fd=parent)
                fd = _open(entry.name, _DIR, parent, "a directory")
                try:
                    copy_tree_in(Path(entry.path), fd)
                    _keep_meta(fd, st)
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                fd = _open(entry.name, _CREATE, parent, "a new file")
                try:
                    source = os.open(entry.path, _READ)
                    try:
                        _copy_fd(source, fd)
                    finally:
                        os.close(source)
                    _keep_meta(fd, st)
                finally:
                    os.close(fd)
            elif stat.S_ISLNK(st.st_mode):
                with _new(parent, entry.name):
                    os.symlink(os.readlink(entry.path), _name(entry.name), dir_fd=parent)
                os.chown(entry.name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
                os.utime(entry.name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
            elif stat.S_ISFIFO(st.st_mode):
                with _new(parent, entry.name):
                    os.mkfifo(_name(entry.name), 0o600, dir_fd=parent)
                fd = _open(entry.name, _READ, parent, "a FIFO")
                try:
                    _keep_meta(fd, st)
                finally:
                    os.close(fd)
            else:  # sockets are useless without their process; device nodes are not a tenant's to have
                log.info("not restoring %s: neither a file, a directory, a link nor a FIFO", entry.path)
