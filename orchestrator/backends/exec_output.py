"""Exec output shared by backends: bounded output and throttled streaming (the wrapper is in exec_wrapper).

Output is bounded per stream: up to ``limit`` bytes are kept whole; past that the first and the
last ``limit / 2`` bytes are kept with a marker saying how much was left out between them (the end
of a failing command's output is usually what matters). Reading goes on after the bound is reached,
so a chatty command never blocks on a full pipe; it runs until it exits or its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["BoundedOutput", "OutputStreamer"]


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
