"""sftp into the workload, over the same exec channel as a session (``Backend.session``).

Each SFTP request is a short command in the workload, as its user: ``stat``, ``ls``-like listings,
``mkdir``, ``rm``, ``mv``, ``chmod``; a file is read whole with ``cat`` when opened for reading, and written
whole with ``cat > path`` when closed after writing (bytes both ways: the session channel is binary-safe).
So what may be written is what the workload's user may write (its volumes, /tmp; the root filesystem is
read-only), and a file moves within ``MAX_FILE_BYTES``. Attributes other than permissions are not set.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncssh

from ..backends.base import Backend, SessionInput, SessionSpec
from ..errors import AgentHostError

__all__ = ["MAX_FILE_BYTES", "WorkloadSftp"]

MAX_FILE_BYTES = 64 * 1024 * 1024
# find(1), not stat(1): gVisor refuses the statx call of coreutils' stat and ls.
_FIND = "%s %m %U %G %A@ %T@ %y"
_TYPES = {"f": 0o100000, "d": 0o040000, "l": 0o120000, "p": 0o010000, "s": 0o140000, "c": 0o020000, "b": 0o060000}


@dataclass
class _File:
    path: str
    append: bool = False
    data: bytearray = field(default_factory=bytearray)
    dirty: bool = False


def _attrs(line: str) -> asyncssh.SFTPAttrs:
    size, mode, uid, gid, atime, mtime, kind = line.rstrip("\n").split(" ", 7)[:7]
    return asyncssh.SFTPAttrs(
        size=int(size),
        permissions=_TYPES.get(kind, 0) | int(mode, 8),
        uid=int(uid),
        gid=int(gid),
        atime=int(float(atime)),
        mtime=int(float(mtime)),
    )


class WorkloadSftp(asyncssh.SFTPServer):
    """An SFTP server whose filesystem is the workload's, reached through ``backend.session``."""

    def __init__(
        self,
        chan: Any,
        backend: Backend,
        workload_id: str,
        touch: Callable[[], None],
        on_exit: Callable[[], Awaitable[None]],
    ) -> None:
        """``touch()`` is called at every request (the connection is not idle); ``on_exit()`` once at the end."""
        super().__init__(chan)
        self._backend = backend
        self._workload = workload_id
        self._touch = touch
        self._on_exit = on_exit
        self._cwd: str | None = None

    async def exit(self) -> None:
        await self._on_exit()

    async def _run(self, argv: list[str], stdin: bytes = b"", limit: int = 1024 * 1024) -> tuple[int, bytes, str]:
        """Raises: SFTPFailure when the workload cannot run it or its output passes ``limit``."""
        self._touch()
        send, receive = anyio.create_memory_object_stream[SessionInput](4)
        out, err = bytearray(), bytearray()

        async def collect(stream: str, data: bytes) -> None:
            buf = err if stream == "stderr" else out
            buf += data
            if len(out) > limit:
                raise asyncssh.SFTPFailure(f"more than {limit} bytes: sftp moves files of up to {MAX_FILE_BYTES}")

        async def feed() -> None:
            async with send:
                for i in range(0, len(stdin), 65536):
                    await send.send(stdin[i : i + 65536])
                await send.send(None)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                code = await self._backend.session(self._workload, SessionSpec(argv), receive, collect)
        except AgentHostError as exc:
            raise asyncssh.SFTPFailure(exc.message) from exc
        if code is None:
            raise asyncssh.SFTPConnectionLost("the workload stopped or restarted")
        return code, bytes(out), err.decode(errors="replace").strip()

    async def _must(self, argv: list[str], stdin: bytes = b"", limit: int = 1024 * 1024) -> bytes:
        code, out, err = await self._run(argv, stdin, limit)
        if code != 0:
            if "No such file" in err:
                raise asyncssh.SFTPNoSuchFile(err)
            if "ermission denied" in err or "Read-only file system" in err:
                raise asyncssh.SFTPPermissionDenied(err)
            raise asyncssh.SFTPFailure(err or f"{argv[0]} exited {code}")
        return out

    async def _path(self, path: bytes) -> str:
        name = path.decode(errors="surrogateescape")
        if not name.startswith("/"):
            if self._cwd is None:
                self._cwd = (await self._must(["pwd"])).decode().strip() or "/"
            name = posixpath.join(self._cwd, name)
        return posixpath.normpath(name).replace("//", "/")

    async def realpath(self, path: bytes) -> bytes:
        return (await self._path(path)).encode()

    async def _find(self, path: bytes, *how: str) -> bytes:
        """find(1) on one path (an absolute one, so never taken for an option)."""
        return await self._must(["find", *how, await self._path(path), "-maxdepth", "0", "-printf", _FIND + "\\n"])

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return _attrs((await self._find(path, "-L")).decode())

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return _attrs((await self._find(path)).decode())

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        argv = ["find", await self._path(path), "-mindepth", "1", "-maxdepth", "1", "-printf", _FIND + " %f\\n"]
        listing = await self._must(argv, limit=8 * 1024 * 1024)
        for line in listing.decode(errors="surrogateescape").splitlines():
            parts = line.split(" ", 7)
            if len(parts) == 8:
                yield asyncssh.SFTPName(parts[7].encode(errors="surrogateescape"), attrs=_attrs(line))

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> _File:
        name = await self._path(path)
        handle = _File(name, append=bool(pflags & asyncssh.FXF_APPEND))
        if pflags & asyncssh.FXF_WRITE:
            # Creates a missing file, and fails now, with the workload's own error, where its user may not write.
            await self._must(["/bin/sh", "-c", ': >> "$1"', "ah-open", name])
            if pflags & asyncssh.FXF_TRUNC:
                handle.dirty = True  # empty, even when nothing is written
                return handle
        handle.data += await self._must(["cat", "--", name], limit=MAX_FILE_BYTES)
        return handle

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, _File)
        return bytes(file_obj.data[offset : offset + size])

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        assert isinstance(file_obj, _File)
        if file_obj.append:
            offset = len(file_obj.data)
        if offset + len(data) > MAX_FILE_BYTES:
            raise asyncssh.SFTPFailure(f"sftp moves files of up to {MAX_FILE_BYTES} bytes")
        if offset > len(file_obj.data):
            file_obj.data += bytes(offset - len(file_obj.data))
        file_obj.data[offset : offset + len(data)] = data
        file_obj.dirty = True
        return len(data)

    async def close(self, file_obj: object) -> None:
        assert isinstance(file_obj, _File)
        if file_obj.dirty:
            await self._must(["/bin/sh", "-c", 'cat > "$1"', "ah-put", file_obj.path], bytes(file_obj.data))

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        assert isinstance(file_obj, _File)
        return await self.stat(file_obj.path.encode(errors="surrogateescape"))

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        if attrs.permissions is not None:
            await self._must(["chmod", f"{attrs.permissions & 0o7777:o}", "--", await self._path(path)])

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        assert isinstance(file_obj, _File)
        await self.setstat(file_obj.path.encode(errors="surrogateescape"), attrs)

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self._must(["mkdir", "--", await self._path(path)])

    async def rmdir(self, path: bytes) -> None:
        await self._must(["rmdir", "--", await self._path(path)])

    async def remove(self, path: bytes) -> None:
        await self._must(["rm", "--", await self._path(path)])

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._must(["mv", "--", await self._path(oldpath), await self._path(newpath)])
