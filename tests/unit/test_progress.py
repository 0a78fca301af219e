"""Progress as a listener gets it: strictly increasing per call, a total only where one is known."""

from __future__ import annotations

import pytest

from orchestrator.progress import Monotonic

pytestmark = pytest.mark.anyio


async def _through(reports: list[tuple[float | None, float | None]]) -> list[tuple[float, float | None]]:
    sent: list[tuple[float, float | None]] = []

    async def sink(message: str, progress: float | None = None, total: float | None = None) -> None:
        assert progress is not None
        sent.append((progress, total))

    mono = Monotonic(sink)
    for progress, total in reports:
        await mono("step", progress, total)
    return sent


async def test_steps_without_a_value_count_up() -> None:
    assert await _through([(None, None), (None, None), (None, None)]) == [(0, None), (1, None), (2, None)]


async def test_a_phase_that_starts_again_continues_past_the_last_value() -> None:
    # A deploy: "recorded" (0, no total), then the health wait (0 of 45, 2.5 of 45, 45 of 45).
    sent = await _through([(0, None), (0, 45), (2.5, 45), (45, 45)])
    assert sent == [(0, None), (1, 46), (3.5, 46), (46, 46)]


async def test_values_always_increase_and_never_pass_their_total() -> None:
    reports: list[tuple[float | None, float | None]] = [
        (0, None),
        (0, None),
        (None, None),
        (5, 10),
        (5, 10),
        (3, 10),
        (None, None),
        (10, 10),
        (0, 20),
        (1, 2),
    ]
    sent = await _through(reports)
    values = [p for p, _ in sent]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values
    assert all(total is None or p <= total for p, total in sent), sent


async def test_a_step_without_a_value_drops_the_total() -> None:
    assert await _through([(1, 10), (None, 10)]) == [(1, 10), (2, None)]
