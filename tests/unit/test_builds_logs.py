"""Build logs: append-only, bounded, readable by tail or by offset."""

from __future__ import annotations

from pathlib import Path

from orchestrator.builds.logs import BuildLog, read_log


def test_tail_and_offsets(tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "b.log", max_bytes=1 << 20)
    log.write("one\ntwo")
    text, offset, cut = read_log(log.path, tail=1, offset=None, max_bytes=1 << 20)
    assert (text, cut) == ("two", True)
    log.write("three")
    text, offset2, cut = read_log(log.path, tail=None, offset=offset, max_bytes=1 << 20)
    assert (text, cut) == ("three\n", False)
    assert read_log(log.path, tail=None, offset=offset2, max_bytes=1 << 20) == ("", offset2, False)
    log.close()
    assert (tmp_path / "b.log").stat().st_mode & 0o777 == 0o600


def test_offset_reads_are_bounded_and_end_on_a_line(tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "b.log", max_bytes=1 << 20)
    log.write("\n".join(f"line {i:03}" for i in range(100)))
    text, offset, cut = read_log(log.path, tail=None, offset=0, max_bytes=50)
    assert cut and text.endswith("\n") and len(text) <= 50
    rest, _, cut = read_log(log.path, tail=None, offset=offset, max_bytes=1 << 20)
    assert not cut
    assert (text + rest).splitlines() == [f"line {i:03}" for i in range(100)]


def test_past_the_limit_the_last_lines_are_kept(tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "b.log", max_bytes=200, keep_lines=5)
    for i in range(100):
        log.write(f"line {i:03}")
    size_during = (tmp_path / "b.log").stat().st_size
    log.close()
    text = (tmp_path / "b.log").read_text()
    assert size_during < 300
    assert "log limit reached" in text
    assert "lines left out" in text
    assert text.splitlines()[-5:] == [f"line {i:03}" for i in range(95, 100)]
    assert log.write("after close") is None  # ignored


def test_very_long_lines_are_cut(tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "b.log", max_bytes=1 << 20)
    log.write("x" * 10_000)
    log.close()
    assert len((tmp_path / "b.log").read_text()) < 2100


def test_missing_log_reads_empty(tmp_path: Path) -> None:
    assert read_log(tmp_path / "none.log", tail=10, offset=None, max_bytes=100) == ("", 0, False)
