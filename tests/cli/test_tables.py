"""Formatting of central's answers: gbasf2-like tables and summaries, JSON-ready dicts."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table

from gridpilot.cli.tables import (
    dataset_table,
    file_to_dict,
    job_to_dict,
    jobs_table,
    pilot_summary_line,
    pilot_to_dict,
    pilots_table,
    project_to_dict,
    projects_table,
    summary_lines,
)
from gridpilot.v1 import common_pb2, data_pb2, jobs_pb2, sitedirectors_pb2

WAITING = common_pb2.JOB_STATUS_WAITING
RUNNING = common_pb2.JOB_STATUS_RUNNING
DONE = common_pb2.JOB_STATUS_DONE
STALLED = common_pb2.JOB_STATUS_STALLED


def _render(table: Table) -> str:
    out = io.StringIO()
    Console(file=out, width=200, highlight=False).print(table)
    return out.getvalue()


def _job(job_id: int, status: common_pb2.JobStatus.ValueType, **kw: object) -> jobs_pb2.JobSummary:
    return jobs_pb2.JobSummary(
        job_id=job_id,
        project="p1",
        owner="alice",
        group="belle_user",
        status=status,
        updated_unix=1_700_000_000.0,
        **kw,  # type: ignore[arg-type]
    )


def test_jobs_table_has_gbasf2_columns_and_values() -> None:
    jobs = [
        _job(11, WAITING, minor_status="Pilot Agent Submission"),
        _job(12, RUNNING, minor_status="Application", application_status="basf2", site="KEK"),
    ]
    text = _render(jobs_table(jobs))
    header = text.splitlines()[1]
    for column in ("JobID", "Owner", "Status", "MinorStatus", "ApplicationStatus", "Site"):
        assert column in header
    row12 = next(line for line in text.splitlines() if " 12 " in line)
    for cell in ("alice", "Running", "Application", "basf2", "KEK", "2023-11-14 22:13:20"):
        assert cell in row12
    row11 = next(line for line in text.splitlines() if " 11 " in line)
    assert "Waiting" in row11
    assert "Pilot Agent Submission" in row11


def test_summary_counts_per_status() -> None:
    jobs = [_job(1, DONE), _job(2, DONE), _job(3, WAITING), _job(4, STALLED)]
    lines = summary_lines(jobs)
    assert lines[0] == "--- Summary of Selected Jobs ---"
    cells = dict(cell.split(":") for cell in lines[1].split())
    assert cells["Done"] == "2"
    assert cells["Waiting"] == "1"
    assert cells["Stalled"] == "1"  # not a headline state, shown because present
    assert cells["Failed"] == "0"
    assert "Matched" not in cells
    assert lines[2] == "4 jobs are selected."
    assert summary_lines([]) == ["0 jobs are selected."]
    assert summary_lines([_job(1, DONE)])[-1] == "1 job is selected."


def test_job_json_round_trips() -> None:
    job = _job(7, RUNNING, site="DESY", attempt=2, reschedule_count=1)
    decoded = json.loads(json.dumps([job_to_dict(job)]))
    assert decoded[0]["job_id"] == 7
    assert decoded[0]["status"] == "Running"
    assert decoded[0]["attempt"] == 2
    assert decoded[0]["site"] == "DESY"


def test_unspecified_status_reads_unknown() -> None:
    job = _job(8, common_pb2.JOB_STATUS_UNSPECIFIED)
    assert job_to_dict(job)["status"] == "Unknown"


def test_projects_table_shows_present_statuses_in_lifecycle_order() -> None:
    p1 = jobs_pb2.ProjectSummary(
        project="p1",
        owner="alice",
        submitted_unix=1_700_000_000.0,
        counts=[
            jobs_pb2.StatusCount(status=DONE, count=3),
            jobs_pb2.StatusCount(status=WAITING, count=2),
        ],
    )
    p2 = jobs_pb2.ProjectSummary(
        project="p2", owner="alice", counts=[jobs_pb2.StatusCount(status=RUNNING, count=1)]
    )
    text = _render(projects_table([p1, p2]))
    header = text.splitlines()[1]
    assert header.index("Waiting") < header.index("Running") < header.index("Done")
    assert "Failed" not in header
    row1 = next(line for line in text.splitlines() if " p1 " in line)
    assert [c.strip() for c in row1.split("│")[4:8]] == ["5", "2", "0", "3"]
    assert project_to_dict(p1)["counts"] == {"Done": 3, "Waiting": 2}
    assert project_to_dict(p1)["total"] == 5


def test_dataset_table_and_json() -> None:
    f = data_pb2.FileReplicas(
        lfn="/belle/user/alice/ds/a.root",
        size=2_000_000,
        adler32="0a0b0c0d",
        replicas=[data_pb2.Replica(se="KEK-SE", url="file:///se/belle/user/alice/ds/a.root")],
    )
    text = _render(dataset_table([f]))
    assert "/belle/user/alice/ds/a.root" in text
    for cell in ("2.0 MB", "0a0b0c0d", "KEK-SE"):
        assert cell in text
    assert json.loads(json.dumps(file_to_dict(f)))["replicas"][0]["se"] == "KEK-SE"


def test_pilots_table() -> None:
    pilots = [
        sitedirectors_pb2.PilotRecord(
            pilot_id="p-1", site="KEK", state=common_pb2.PILOT_STATE_RUNNING, jobs_run=4
        ),
        sitedirectors_pb2.PilotRecord(
            pilot_id="p-2", site="KEK", state=common_pb2.PILOT_STATE_DONE
        ),
    ]
    text = _render(pilots_table(pilots))
    for cell in ("p-1", "Running", "Done"):
        assert cell in text
    assert pilot_summary_line(pilots) == "2 pilot(s) — Running:1  Done:1"
    assert pilot_to_dict(pilots[0])["state"] == "Running"
