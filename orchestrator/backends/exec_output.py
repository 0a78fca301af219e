"""Exec plumbing shared by backends: bounded output, throttled streaming, and the in-container wrapper.

Output is bounded per stream: up to ``limit`` bytes are kept whole; past that the first and the
last ``limit / 2`` bytes are kept with a marker saying how much was left out between them (the end
of a failing command's output is usually what matters). Reading goes on after the bound is reached,
so a chatty command never blocks on a full pipe; it runs until it exits or its deadline.

The wrapper and the killer are POSIX ``sh`` (no bash, grep or procps needed in the image). The
wrapper records its pid in the container's /tmp and every process started by the command inherits
``AGENTHOST_EXEC_ID``; on a deadline the killer stops and kills the recorded process, its
descendants and anything still carrying the marker (a daemon that double-forked away from its
parent), until none is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["EXEC_MARKER", "KILLER", "WORKDIR_MISSING", "WRAPPER", "BoundedOutput", "OutputStreamer"]

EXEC_MARKER = "AGENTHOST_EXEC_ID"
WORKDIR_MISSING = 125

# $0 is the exec key, $1 'i' when stdin is attached (else it reads /dev/null), $2 the workdir ('' for the
# container's own), then the argv. Attached stdin is first read whole into a file in /tmp and the command
# reads that file, so input the command never reads is not left pending in the engine's pipes.
WRAPPER = (
    'k=$0; echo $$ > "/tmp/.ah-exec-$k" 2>/dev/null; '
    'if [ "$1" = i ]; then f="/tmp/.ah-in-$k"; if cat > "$f" 2>/dev/null; then exec < "$f"; fi; rm -f "$f"; '
    "else exec </dev/null; fi; shift; "
    'if [ -n "$1" ]; then cd -- "$1" 2>/dev/null || '
    '{ echo "agenthost: workdir $1: no such directory" >&2; rm -f "/tmp/.ah-exec-$k"; '
    f"exit {WORKDIR_MISSING}; }}; fi; "
    "shift; "
    'if ! command -v -- "$1" >/dev/null 2>&1; then '
    'echo "agenthost: command not found: $1" >&2; rm -f "/tmp/.ah-exec-$k"; exit 127; fi; '
    '"$@"; rc=$?; rm -f "/tmp/.ah-exec-$k"; exit $rc'
)

# $1 is the exec key. Prints how many processes it killed. Zombies are skipped: they are already dead.
KILLER = (
    "k=$1; me=$$; killed=0; "
    # the parent pid of a live process (fails for a zombie or a process that is gone)
    "live_ppid() { s=$(cat /proc/$1/stat 2>/dev/null) || return 1; s=${s##*) }; set -- $s; "
    '[ "$1" != Z ] || return 1; echo $2; }; '
    "victims() { "
    '  root=$(cat "/tmp/.ah-exec-$k" 2>/dev/null); found=" "; '
    '  [ -n "$root" ] && live_ppid $root >/dev/null && found=" $root "; '
    '  for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$me" ] && continue; '
    f'    case "$(cat $d/environ 2>/dev/null)" in *"{EXEC_MARKER}=$k"*) '
    '      case "$found" in *" $p "*) ;; *) live_ppid $p >/dev/null && found="$found$p ";; esac;; esac; done; '
    "  grew=1; while [ $grew = 1 ]; do grew=0; "
    '    for d in /proc/[0-9]*; do p=${d#/proc/}; case "$found" in *" $p "*) continue;; esac; '
    '      pp=$(live_ppid $p) || continue; case "$found" in *" $pp "*) found="$found$p "; grew=1;; esac; done; '
    "  done; echo $found; }; "
    # A few rounds catch what forked meanwhile; the pause lets the dead be reaped before /proc is read again.
    'for round in 1 2 3; do v=$(victims); [ -z "$v" ] && break; '
    "  kill -KILL $v 2>/dev/null; set -- $v; killed=$((killed + $#)); "
    "  sleep 0.3 2>/dev/null || true; done; "
    'rm -f "/tmp/.ah-exec-$k"; echo $killed'
)


class BoundedOutput:
    """One stream's output: everything up to ``limit`` bytes, else its head and tail around a marker."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self._half = self.limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes | memoryview) -> None:
        self.total += len(data)
        room = self._half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            keep = self.limit - self._half
            if len(self.tail) > 2 * keep:  # trim in batches: amortised linear time for any volume
                del self.tail[: len(self.tail) - keep]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        keep = self.limit - self._half
        tail = bytes(self.tail[-keep:])
        omitted = self.total - len(self.head) - len(tail)
        marker = f"\n[... {omitted} bytes omitted by agenthost: output is bounded to {self.limit} bytes ...]\n"
        return bytes(self.head).decode("utf-8", "replace") + marker + tail.decode("utf-8", "replace")


class OutputStreamer:
    """Collects new output and hands it on at most every ``interval_s`` seconds, each batch capped in size."""

    def __init__(self, emit: Callable[[str], None] | None, interval_s: float = 0.5, cap: int = 4096) -> None:
        self._emit = emit
        self._interval = interval_s
        self._cap = cap
        self._pending = bytearray()
        self._dropped = 0
        self._last = time.monotonic()

    def add(self, data: bytes | memoryview) -> None:
        if self._emit is None:
            return
        self._pending += data
        if len(self._pending) > 2 * self._cap:
            self._dropped += len(self._pending) - self._cap
            del self._pending[: len(self._pending) - self._cap]

    def flush(self, force: bool = False) -> None:
        if self._emit is None or not self._pending:
            return
        if not force and time.monotonic() - self._last < self._interval:
            return
        if len(self._pending) > self._cap:
            self._dropped += len(self._pending) - self._cap
            del self._pending[: len(self._pending) - self._cap]
        text = bytes(self._pending).decode("utf-8", "replace")
        if self._dropped:
            text = f"[... {self._dropped} bytes not streamed ...]\n{text}"
        self._pending.clear()
        self._dropped = 0
        self._last = time.monotonic()
        self._emit(text)
