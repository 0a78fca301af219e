"""Bounded output and throttled streaming of exec output."""

from __future__ import annotations

import re

from orchestrator.backends.exec_output import BoundedOutput, OutputStreamer


def test_output_within_the_bound_is_kept_whole() -> None:
    out = BoundedOutput(100)
    for chunk in (b"a" * 40, b"b" * 40, b"c" * 20):
        out.add(chunk)
    assert out.text() == "a" * 40 + "b" * 40 + "c" * 20 and not out.truncated


def test_large_output_keeps_head_and_tail() -> None:
    out = BoundedOutput(1000)
    total = 0
    for i in range(10_000):
        chunk = f"line {i:05d}\n".encode()
        out.add(chunk)
        total += len(chunk)
    text = out.text()
    assert out.truncated and out.total == total
    assert text.startswith("line 00000\n") and text.endswith("line 09999\n")
    omitted = int(re.search(r"\[\.\.\. (\d+) bytes omitted", text).group(1))  # type: ignore[union-attr]
    assert omitted == total - 1000
    assert len(out.head) + len(out.tail[-500:]) == 1000
    assert len(out.tail) <= 2 * 500 + len(chunk)  # memory stays bounded


def test_split_utf8_is_replaced_not_raised() -> None:
    out = BoundedOutput(10)
    out.add("é".encode() * 20)
    assert out.truncated and "omitted" in out.text()


def test_streamer_throttles_and_caps() -> None:
    sent: list[str] = []
    s = OutputStreamer(sent.append, interval_s=3600, cap=10)
    s.add(b"x" * 5)
    s.flush()
    assert sent == []  # throttled
    s.add(b"y" * 100)
    s.flush(force=True)
    assert len(sent) == 1 and sent[0].endswith("y" * 10) and "not streamed" in sent[0]
    s.flush(force=True)
    assert len(sent) == 1  # nothing new


def test_streamer_without_sink_keeps_nothing() -> None:
    s = OutputStreamer(None)
    s.add(b"x" * 10_000)
    s.flush(force=True)
