"""A reconciler pass's failures: a record whose repair raises is logged with its id and skipped.

The reconciler is a loop with no caller to hand an error to, so it is the one place besides the
API boundary that catches every Exception: one bad record (a damaged row, a spec the engine
refuses) must not stop the repairs of every other tenant's records, the other passes, or the
orphan cleanup. An unreachable engine (``BackendUnavailable``, but not an unreachable backup
repository) still stops the whole pass: nothing else could be repaired either, and the next
pass tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import AgentHostError, BackendUnavailable, BackupTargetUnavailable

__all__ = ["PassFailures"]

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
