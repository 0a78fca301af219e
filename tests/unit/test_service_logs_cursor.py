"""service_logs cursors: a page resumes exactly after the last line given, lines sharing a timestamp too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.backends.base import LogLine
from orchestrator.errors import InvalidInput
from orchestrator.services.logs import LogQuery, _after, _cursor_after, format_cursor, parse_cursor

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lines(*offsets: int) -> list[LogLine]:
    return [LogLine(ts=T0 + timedelta(microseconds=o), text=f"l{i}") for i, o in enumerate(offsets)]


def test_cursor_round_trips() -> None:
    assert parse_cursor(format_cursor(T0, 3)) == (T0, 3)


@pytest.mark.parametrize("bad", ["", "x", "2026-01-01T00:00:00~1", "2026-01-01T00:00:00+00:00~-1", "~1", "a~b"])
def test_a_cursor_not_handed_out_is_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_cursor(bad)


def test_pages_resume_after_lines_that_share_a_timestamp() -> None:
    log = lines(0, 1, 1, 1, 2)
    first = log[:3]  # ends inside the group at offset 1
    cursor = parse_cursor(_cursor_after(first, None) or "")
    assert cursor == (T0 + timedelta(microseconds=1), 2)
    assert [ln.text for ln in _after(log, cursor)] == ["l3", "l4"]
    # A page that only continues the same group counts the lines given before it too.
    second = _after(log, cursor)[:1]
    assert parse_cursor(_cursor_after(second, cursor) or "") == (T0 + timedelta(microseconds=1), 3)


def test_an_empty_page_keeps_the_cursor() -> None:
    assert _cursor_after([], (T0, 1)) == format_cursor(T0, 1)
    assert _cursor_after([LogLine(text="no timestamp")], None) is None


def test_selectors_are_exclusive() -> None:
    with pytest.raises(InvalidInput):
        LogQuery(10, 60, format_cursor(T0, 0))
    with pytest.raises(InvalidInput):
        LogQuery(10, None, None, previous=True, follow=True)
