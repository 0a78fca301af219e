"""Progress of a long use-case (deploy, build, backup…), told to whoever waits for it as it happens."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Monotonic", "Reporter", "silent"]


class Reporter(Protocol):
    async def __call__(self, message: str, progress: float | None = None, total: float | None = None) -> None: ...


async def silent(message: str, progress: float | None = None, total: float | None = None) -> None:
    """The reporter of a caller that does not listen (the reconciler, background work, tests)."""


class Monotonic:
    """One call's reports, made strictly increasing for a listener that needs that (MCP progress).

    A use-case reports in phases, each on its own scale: a step with no value, then seconds waited out
    of a budget, then another phase that starts again at 0. A report without a value is one step past
    the last; a phase that starts again is shifted to begin one past the last value, and its total
    (when it has one) is shifted with it, so "progress of total" stays true within the phase.
    """

    def __init__(self, sink: Reporter) -> None:
        self._sink = sink
        self._last: float | None = None
        self._offset = 0.0

    async def __call__(self, message: str, progress: float | None = None, total: float | None = None) -> None:
        last = self._last
        if progress is None:
            value, total = (0.0 if last is None else last + 1), None
        else:
            value = progress + self._offset
            if last is not None and value <= last:
                self._offset = last + 1 - progress
                value = last + 1
        shifted = None if total is None or progress is None else total + self._offset
        if shifted is not None and shifted < value:
            shifted = None  # a total the value has passed tells nothing
        self._last = value
        await self._sink(message, value, shifted)
