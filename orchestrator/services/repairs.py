"""A reconciler pass's failures: a record whose repair raises is logged with its id and skipped; and the check
after a repair that recreated a container, that its record still wants it (``still_wanted``).

The reconciler is a loop with no caller to hand an error to, so it is the one place besides the
API boundary that catches every Exception: one bad record (a damaged row, a spec the engine
refuses) must not stop the repairs of every other tenant's records, the other passes, or the
orphan cleanup. An unreachable engine (``BackendUnavailable``, but not an unreachable backup
repository) still stops the whole pass: nothing else could be repaired either, and the next
pass tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from ..backends.base import Backend
from ..errors import AgentHostError, BackendUnavailable, BackupTargetUnavailable, NotFound

__all__ = ["PassFailures", "still_wanted"]

log = logging.getLogger("orchestrator.services.reconciler")


class PassFailures:
    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run one repair; when it raises, log ``what`` (say the record's id) and the error, and go on."""
        try:
            yield
        except BackendUnavailable as exc:
            if not isinstance(exc, BackupTargetUnavailable):
                raise
            self._skip(what, exc)
        except Exception as exc:
            self._skip(what, exc)

    def _skip(self, what: str, exc: Exception) -> None:
        self.count += 1
        if isinstance(exc, AgentHostError):
            log.warning("reconcile: %s skipped, its repair failed: %s", what, exc)
        else:
            log.exception("reconcile: %s skipped, its repair crashed (%s)", what, type(exc).__name__)


class _Record(Protocol):
    @property
    def desired_state(self) -> str: ...


async def still_wanted(get: Callable[[str], Awaitable[_Record]], backend: Backend, workload_id: str) -> bool:
    """After a pass recreated ``workload_id``'s container: whether its record (read by ``get``) still wants it
    running. A delete may have marked the record after the pass read it and removed what it found, and then
    waits for the engine to have nothing left: the container the pass made is removed here, or the delete
    would time out on it and leave it behind. A stop that came meanwhile gets it stopped."""
    try:
        desired = (await get(workload_id)).desired_state
    except NotFound:
        desired = "deleted"
    if desired == "stopped":
        await backend.stop_workload(workload_id)
    elif desired != "running":
        await backend.remove_workload(workload_id)
    return desired == "running"
