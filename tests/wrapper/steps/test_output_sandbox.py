from __future__ import annotations

import tarfile
from pathlib import Path

from wrapper.steps.output_sandbox import build_output_sandbox, truncate_middle


def test_truncate_middle_keeps_ends() -> None:
    assert truncate_middle(b"short", 100) == b"short"
    data = b"HEAD" + b"m" * 10_000 + b"TAIL"
    cut = truncate_middle(data, 500)
    assert len(cut) <= 500
    assert cut.startswith(b"HEAD")
    assert cut.endswith(b"TAIL")
    assert b"bytes cut by the gridpilot wrapper" in cut
    assert truncate_middle(data, 10) == b"HEAD" + b"m" * 6


def test_sandbox_caps_each_log(tmp_path: Path) -> None:
    small = tmp_path / "payload.log"
    small.write_text("[INFO] Processed event 1\n")
    big = tmp_path / "wrapper.log"
    big.write_bytes(b"first line\n" + b"x" * 100_000 + b"\nlast line\n")
    archive = build_output_sandbox(
        [small, big, tmp_path / "absent.log"], tmp_path / "out.tar.gz", cap=20_000
    )
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["payload.log", "wrapper.log"]
        payload = tar.extractfile("payload.log")
        wrapper = tar.extractfile("wrapper.log")
        assert payload is not None
        assert wrapper is not None
        assert payload.read() == small.read_bytes()
        content = wrapper.read()
    assert len(content) <= 10_000
    assert content.startswith(b"first line")
    assert content.endswith(b"last line\n")
