"""Progress of a long use-case (deploy, build, backup…), told to whoever waits for it as it happens."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Reporter"]


class Reporter(Protocol):
    async def __call__(self, message: str, progress: float | None = None, total: float | None = None) -> None: ...
