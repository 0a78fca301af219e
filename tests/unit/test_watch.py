"""While a caller waits for a workload, the engine is asked for changes (a blocking query on Nomad) until the
workload runs; then the caller probes it, and the engine's status is re-read at every tenth probe only."""

from __future__ import annotations

from typing import cast

import pytest

from orchestrator.backends.base import Backend, WorkloadState, WorkloadStatus
from orchestrator.watch import StatusFeed

pytestmark = pytest.mark.anyio


class Engine:
    """Answers each watch with the next state of ``states`` and records (index, wait_s) of every call."""

    def __init__(self, states: list[WorkloadState]) -> None:
        self.states = states
        self.calls: list[tuple[int, float]] = []

    async def watch_workload(self, workload_id: str, index: int, wait_s: float) -> tuple[WorkloadStatus, int]:
        self.calls.append((index, wait_s))
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return WorkloadStatus(id=workload_id, state=state), len(self.calls) * 10


async def test_until_it_runs_each_read_waits_for_a_change_past_the_last_index() -> None:
    engine = Engine(["pending", "pending", "running"])
    feed = StatusFeed(cast(Backend, engine), "w")
    st = await feed.first()
    st = await feed.next(st, remaining_s=30)
    st = await feed.next(st, remaining_s=0.01)
    assert st.state == "running"
    # The first read is at once; then each asks for a change past the index of the one before, for at most
    # 2 s (never less than one probe's pace, even when little time is left).
    assert engine.calls == [(0, 0), (10, 2.0), (20, 0.05)]


async def test_while_it_runs_and_is_probed_the_engine_is_read_at_every_tenth_probe() -> None:
    engine = Engine(["running"])
    feed = StatusFeed(cast(Backend, engine), "w")
    st = await feed.first()
    for _ in range(20):
        st = await feed.next(st, remaining_s=30)
    assert engine.calls == [(0, 0), (0, 0), (0, 0)]  # read at once (no index: no blocking wait)
