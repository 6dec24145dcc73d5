from __future__ import annotations

from pathlib import Path

from gridpilot.v1 import common_pb2, pilots_pb2
from wrapper.steps.report import Outcome, finish_request, write_report_done


def test_finish_request_carries_everything() -> None:
    out = pilots_pb2.OutputFile(lfn="/x", se="A", size=3, adler32="00000001")
    outcome = Outcome(
        common_pb2.ExitCategory.EXIT_CATEGORY_APPLICATION_ERROR,
        "payload failed: basf2 exit code 3",
        exit_code=3,
        outputs=[out],
        cpu_seconds=1.5,
        wall_seconds=2.5,
    )
    assert outcome.category_name == "EXIT_CATEGORY_APPLICATION_ERROR"
    request = finish_request(7, 2, outcome, "sb123")
    assert (request.job_id, request.attempt, request.exit_code) == (7, 2, 3)
    assert request.exit_category == common_pb2.ExitCategory.EXIT_CATEGORY_APPLICATION_ERROR
    assert request.output_sandbox == "sb123"
    assert list(request.outputs) == [out]
    assert (request.cpu_seconds, request.wall_seconds) == (1.5, 2.5)


def test_report_done_is_written_atomically(tmp_path: Path) -> None:
    path = write_report_done(tmp_path, "Done")
    assert path == tmp_path / "report.done"
    assert path.read_text().startswith("Done ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.done"]
