"""A workload's status while a caller waits for it to become ready.

Until the engine says it runs, the status is re-read only when the engine reports a change (on Nomad a
blocking query on its allocations, which answers as soon as one changes; on Docker an inspect after a short
pause). Once it runs, the caller probes the workload itself at a brisk pace (its port, its database), and the
engine's status is re-read at every tenth probe only: often enough to see a crash within half a second,
without a round trip to the engine per probe.
"""

from __future__ import annotations

import anyio

from .backends.base import Backend, WorkloadStatus

__all__ = ["StatusFeed"]

_PROBE_S = 0.05  # a probe is a connect: cheap beside the wait it shortens
_REREAD_EVERY = 10
_BLOCK_S = 2.0


class StatusFeed:
    def __init__(self, backend: Backend, workload_id: str) -> None:
        self.backend = backend
        self.workload_id = workload_id
        self._index = 0
        self._probes = 0

    async def first(self) -> WorkloadStatus:
        st, self._index = await self.backend.watch_workload(self.workload_id, 0, 0)
        return st

    async def next(self, st: WorkloadStatus, remaining_s: float) -> WorkloadStatus:
        """The status to look at after ``st``, within ``remaining_s``."""
        if st.state == "running":
            await anyio.sleep(_PROBE_S)
            self._probes += 1
            if self._probes % _REREAD_EVERY:
                return st
            # Index 0: read at once (Nomad takes a wait of 0 with an index for its default of minutes).
            st, self._index = await self.backend.watch_workload(self.workload_id, 0, 0)
            return st
        wait_s = min(_BLOCK_S, max(remaining_s, _PROBE_S))
        st, self._index = await self.backend.watch_workload(self.workload_id, self._index, wait_s)
        return st
