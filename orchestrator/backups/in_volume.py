"""restic inside a one-shot job, beside the volume it works on (backends without local volumes: Nomad).

This file is the job's program, sent as its text to ``python3 -c`` (so it imports nothing of the
platform, and holds no dollar-brace pair, which Nomad would expand in a task's args). The volume is
mounted at ``/data``; the restic binary, the repository and its credentials come from the job (env
``RESTIC_REPOSITORY``, ``RESTIC_PASSWORD``, ``AWS_*``, never argv). Every path below ``/data`` is
reached one component at a time with ``O_NOFOLLOW``, as ``backups.files`` does on the Docker host; a
link where a directory belongs stops the job. The job is a container of its own: a link restic
might still meet can only lead into this container's read-only root, never into the node.

Operations (argv after the program):
- ``backup <dir> <tags json> <path>...``: snapshot ``path``s relative to ``/data/<dir>``; the first line
  out is ``{"root": [uid, gid, mode]}`` of the volume's root.
- ``restore <dir> <snapshot> <then>``: restore into ``/data/<dir>`` (made fresh), then
  ``own``: re-own the restored files to the volume root's owner (a dump for the engine to read);
  ``replace``: make the volume hold exactly what ``<dir>`` (at the top) holds, and drop ``<dir>``;
  ``redis``: install ``<dir>/dump.rdb`` as a stopped Redis's AOF base and ``dump.rdb``, drop ``<dir>``.
"""

import json
import os
import shutil
import stat
import sys
from typing import NoReturn

ROOT = "/data"  # where the job mounts the volume
RESTIC = "/usr/local/bin/restic"
D = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
AOF, MANIFEST, BASE, RDB = "appendonlydir", "appendonly.aof.manifest", "appendonly.aof.1.base.rdb", "dump.rdb"


def parts(rel: str) -> list[str]:
    out = [p for p in rel.split("/") if p]
    if any(p in (".", "..") for p in out):
        sys.exit("bad path " + rel)
    return out


def descend(rel: str, create_owner: tuple[int, int] | None = None) -> int:
    fd = os.open(ROOT, D)
    for part in parts(rel):
        if create_owner is not None:
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
                os.chown(part, create_owner[0], create_owner[1], dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
        nfd = os.open(part, D, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def remove(parent: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def chown_tree(fd: int, owner: tuple[int, int]) -> None:
    os.fchown(fd, owner[0], owner[1])
    for name in os.listdir(fd):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, D, dir_fd=fd)
            try:
                chown_tree(sub, owner)
            finally:
                os.close(sub)
        else:
            os.chown(name, owner[0], owner[1], dir_fd=fd, follow_symlinks=False)


def restic(*args: str) -> NoReturn:
    os.execv(RESTIC, [RESTIC, "--no-cache", *args])


def restic_wait(*args: str) -> None:
    pid = os.fork()
    if pid == 0:
        restic(*args)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code != 0:
        sys.exit(code)


def copy_regular(parent: int, name: str, dst_parent: int, dst_name: str, owner: tuple[int, int]) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            sys.exit(name + " is not a regular file")
        dst = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_parent)
        try:
            os.fchown(dst, owner[0], owner[1])
            while True:
                chunk = os.read(src, 1 << 20)
                if not chunk:
                    break
                os.write(dst, chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def main(argv: list[str]) -> None:
    op, rel = argv[0], argv[1]
    if op == "backup":
        top = os.fstat(descend(""))
        # First line: the volume root's owner and mode, for a restore into a new volume.
        os.write(1, (json.dumps({"root": [top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)]}) + "\n").encode())
        os.fchdir(descend(rel))
        tags = [x for tag in json.loads(argv[2]) for x in ("--tag", tag)]
        restic("backup", "--json", "--host", "agenthost", *tags, *argv[3:])
    root = os.open(ROOT, D)
    owner = (os.fstat(root).st_uid, os.fstat(root).st_gid)
    if op == "restore":
        *above, last = parts(rel)
        parent = descend("/".join(above), owner)
        remove(parent, last)
        os.mkdir(last, 0o700, dir_fd=parent)
        fd = os.open(last, D, dir_fd=parent)
        os.fchdir(fd)
        restic_wait("restore", argv[2], "--target", ".")
        then = argv[3]
        if then == "own":
            chown_tree(fd, owner)
        elif then == "replace":
            replace(root, parent, last, fd, json.loads(argv[4]))
        elif then == "redis":
            redis(root, owner, parent, last, fd)
        else:
            sys.exit("unknown step " + then)
        return
    sys.exit("unknown operation " + op)


def exists(parent: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def replace(root: int, parent: int, name: str, staged: int, meta: list[int] | None) -> None:
    if not os.path.samestat(os.fstat(parent), os.fstat(root)):
        sys.exit("a replacement must be staged at the top of the volume")
    for entry in os.listdir(root):
        if entry != name:
            remove(root, entry)
    for entry in os.listdir(staged):
        os.rename(entry, entry, src_dir_fd=staged, dst_dir_fd=root)
    os.rmdir(name, dir_fd=root)
    if meta:
        os.fchown(root, meta[0], meta[1])
        os.fchmod(root, meta[2])


def redis(root: int, owner: tuple[int, int], parent: int, name: str, staged: int) -> None:
    """As backups.sources.swap_redis_files: new files beside the old, renamed in (links moved, never followed)."""
    old, new = AOF + ".ah-old", AOF + ".ah-new"
    if exists(root, old) and not exists(root, AOF):
        os.rename(old, AOF, src_dir_fd=root, dst_dir_fd=root)
    for leftover in (old, new, RDB + ".ah-new"):
        remove(root, leftover)
    os.mkdir(new, 0o755, dir_fd=root)
    os.chown(new, owner[0], owner[1], dir_fd=root, follow_symlinks=False)
    nfd = os.open(new, D, dir_fd=root)
    copy_regular(staged, RDB, nfd, BASE, owner)
    m = os.open(MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=nfd)
    os.write(m, ("file " + BASE + " seq 1 type b\n").encode())
    os.fchown(m, owner[0], owner[1])
    os.close(m)
    copy_regular(staged, RDB, root, RDB + ".ah-new", owner)
    if exists(root, AOF):
        os.rename(AOF, old, src_dir_fd=root, dst_dir_fd=root)
    os.rename(new, AOF, src_dir_fd=root, dst_dir_fd=root)
    os.replace(RDB + ".ah-new", RDB, src_dir_fd=root, dst_dir_fd=root)
    remove(root, old)
    remove(parent, name)


if __name__ == "__main__":
    main(sys.argv[1:])
