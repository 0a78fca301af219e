"""Build output, kept in the data dir so it outlives the process that ran the build.

The file is append-only, so a byte offset always means the same place and any process can
follow it. It is bounded: past ``max_bytes`` further lines are held back in a ring of the
latest ones, written after a marker when the build ends. A build that fails late thus
still shows its last lines, which are the ones that say why.

A tenant's logs together are bounded too (its ``max_build_log_bytes`` quota): when a build is
accepted, and on the reconciler's passes, the logs of its finished builds are removed, oldest
first, until they leave room for one more build's log. Builds are never refused for their logs.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import IO

__all__ = ["REMOVED_NOTE", "BuildLog", "LogFiles", "cap_logs", "logs_size", "read_log"]

REMOVED_NOTE = (
    "[agenthost] this build's log was removed: your build logs are kept up to your max_build_log_bytes"
    " quota (whoami), the oldest finished builds' first"
)

_MAX_LINE = 2000


class LogFiles:
    """Where build logs live: ``<data_dir>/build-logs/<tenant>/<build>.log``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "build-logs"

    def folder(self, tenant_id: str) -> Path:
        return self.root / tenant_id

    def path(self, tenant_id: str, build_id: str) -> Path:
        return self.folder(tenant_id) / f"{build_id}.log"


class BuildLog:
    def __init__(self, path: Path, max_bytes: int, keep_lines: int = 200) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = open(path, "ab")  # noqa: SIM115 (open for the build's lifetime)
        os.chmod(path, 0o600)
        self._size = self._file.tell()
        self._held: collections.deque[bytes] = collections.deque(maxlen=keep_lines)
        self._dropped = 0
        self.lines: collections.deque[str] = collections.deque(maxlen=keep_lines)

    def write(self, text: str) -> None:
        """Append one or more lines. Cheap enough for the event loop: a local append and flush."""
        if self._file is None:
            return
        for line in text.splitlines() or [""]:
            line = line.rstrip()
            if len(line) > _MAX_LINE:
                line = line[:_MAX_LINE] + " [...]"
            self.lines.append(line)
            data = (line + "\n").encode("utf-8", "replace")
            if self._size + len(data) <= self.max_bytes:
                self._file.write(data)
                self._size += len(data)
                continue
            if not self._dropped and not self._held:
                self._file.write(b"[agenthost] log limit reached: the last lines follow when the build ends\n")
            if len(self._held) == self._held.maxlen:
                self._dropped += 1
            self._held.append(data)
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        if self._held:
            if self._dropped:
                self._file.write(f"[agenthost] ... {self._dropped} lines left out ...\n".encode())
            self._file.writelines(self._held)
        self._file.close()
        self._file = None


def read_log(path: Path, tail: int | None, offset: int | None, max_bytes: int) -> tuple[str, int, bool]:
    """Read a build log: the last ``tail`` lines, or what follows ``offset``. Returns (text, next offset, cut)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "", 0, False
    with open(path, "rb") as f:
        if offset is not None:
            start = min(max(offset, 0), size)
            f.seek(start)
            data = f.read(max_bytes)
            cut = start + len(data) < size
            if cut and b"\n" in data:
                data = data[: data.rindex(b"\n") + 1]
            return data.decode("utf-8", "replace"), start + len(data), cut
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read()
    lines = data.decode("utf-8", "replace").splitlines()
    cut = start > 0
    if start > 0 and lines:
        lines = lines[1:]  # a partial first line
    if tail is not None and len(lines) > tail:
        lines, cut = lines[-tail:], True
    return "\n".join(lines), size, cut


def _sizes(folder: Path) -> dict[str, int]:
    """Build id -> bytes of each log in ``folder``; a log removed meanwhile (by another process) is left out."""
    sizes = {}
    for path in folder.glob("*.log") if folder.is_dir() else []:
        try:
            sizes[path.stem] = path.stat().st_size
        except FileNotFoundError:
            continue
    return sizes


def logs_size(folder: Path) -> int:
    """Bytes of the build logs in ``folder`` (a tenant's)."""
    return sum(_sizes(folder).values())


def cap_logs(folder: Path, finished_oldest_first: list[str], keep_bytes: int) -> list[str]:
    """Remove logs of the finished builds named, oldest first, until the logs in ``folder`` total at most
    ``keep_bytes`` (running builds' logs count, but stay). Returns the ids whose logs went."""
    sizes = _sizes(folder)
    total = sum(sizes.values())
    removed = []
    for build_id in finished_oldest_first:
        if total <= keep_bytes:
            break
        if build_id in sizes:
            (folder / f"{build_id}.log").unlink(missing_ok=True)
            total -= sizes[build_id]
            removed.append(build_id)
    return removed
