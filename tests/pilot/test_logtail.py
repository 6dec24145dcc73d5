from __future__ import annotations

from pathlib import Path

from pilot.logtail import tail_lines


def test_missing_file_gives_no_lines(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nope.log") == []


def test_short_file_gives_all_lines(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_text("one\ntwo\nthree\n")
    assert tail_lines(log, 20) == ["one", "two", "three"]


def test_last_lines_of_a_long_file(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_lines(log, 20) == [f"line {i}" for i in range(99_980, 100_000)]


def test_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_text("a\nb\nprogress 50%")
    assert tail_lines(log, 2) == ["b", "progress 50%"]


def test_long_lines_are_cut_and_read_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_text("x" * 5_000_000 + "\nend\n")
    lines = tail_lines(log, 20, max_line_chars=100, max_bytes=64 * 1024)
    assert lines[-1] == "end"
    assert all(len(line) <= 100 for line in lines)


def test_undecodable_bytes_are_replaced(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_bytes(b"ok\n\xff\xfe broken\n")
    assert tail_lines(log) == ["ok", "\ufffd\ufffd broken"]


def test_zero_lines(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_text("a\n")
    assert tail_lines(log, 0) == []
