"""gbasf2 and the gb2_job_* commands against a real central subprocess."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gridpilot.cli import gb2_jobs, gbasf2
from gridpilot.cli.common import EXIT_ABORTED, EXIT_USAGE
from gridpilot.v1 import jobs_pb2, jobs_pb2_grpc, sandboxes_pb2, sandboxes_pb2_grpc
from tests.cli.conftest import DATASET, N_FILES, USER, CliRunner
from tests.support.central_process import SITE, CentralHandle

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("alice")]


def _status_json(run_cli: CliRunner, central: CentralHandle, *args: str) -> list[dict[str, Any]]:
    result = run_cli(gb2_jobs.job_status_main, [*args, "--json", "--central", central.target])
    assert result.code == 0, result.err
    decoded: list[dict[str, Any]] = json.loads(result.out)
    return decoded


def _submit(
    run_cli: CliRunner, central: CentralHandle, steering: Path, project: str, *extra: str
) -> list[int]:
    result = run_cli(
        gbasf2.main,
        [str(steering), "-p", project, "-s", "release-08-00-00", *extra, "--force"],
    )
    assert result.code == 0, result.err
    assert f"submitted to project {project}" in result.out
    return [int(j["job_id"]) for j in _status_json(run_cli, central, "-p", project)]


def test_one_job_per_input_file(
    central: CentralHandle,
    run_cli: CliRunner,
    steering: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRIDPILOT_CENTRAL", central.target)  # the env route, not --central
    extra = tmp_path / "cuts.json"
    extra.write_text('{"mbc": 5.27}')
    result = run_cli(
        gbasf2.main,
        [
            *(str(steering), "-p", "perfile", "-s", "release-08-00-00", "-i", DATASET),
            *("-f", str(extra), "--priority", "3", "--cputime", "30", "--basf2opt", "-n 10"),
            "--force",
        ],
    )
    assert result.code == 0, result.err
    assert f"** Number of input files: {N_FILES}" in result.out
    assert f"** Number of jobs: {N_FILES}" in result.out
    assert "Are you sure" not in result.out

    jobs = _status_json(run_cli, central, "-p", "perfile")
    assert len(jobs) == N_FILES
    assert {j["status"] for j in jobs} == {"Waiting"}
    assert {j["owner"] for j in jobs} == {USER}
    assert {j["priority"] for j in jobs} == {3}

    with central.sync_channel(central.user_token(USER)) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        specs = [
            stub.GetJob(jobs_pb2.GetJobRequest(job_id=int(j["job_id"])), timeout=10).spec
            for j in jobs
        ]
        chunks = sandboxes_pb2_grpc.SandboxServiceStub(channel).DownloadSandbox(
            sandboxes_pb2.DownloadSandboxRequest(sandbox_id=specs[0].input_sandbox), timeout=10
        )
        sandbox = b"".join(c.data for c in chunks)
    assert sorted(lfn for s in specs for lfn in s.input_lfns) == [
        f"{DATASET}/sub00/f{i}.root" for i in range(N_FILES)
    ]
    assert {s.steering_file for s in specs} == {"steer.py"}
    assert {s.cpu_time for s in specs} == {1800}
    assert {s.basf2_options for s in specs} == {"-n 10"}
    with tarfile.open(fileobj=io.BytesIO(sandbox), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["cuts.json", "steer.py"]

    table = run_cli(gb2_jobs.job_status_main, ["-p", "perfile"])
    assert table.code == 0
    assert "--- Summary of Selected Jobs ---" in table.out
    assert f"Waiting:{N_FILES}" in table.out
    assert f"{N_FILES} jobs are selected." in table.out
    for column in ("JobID", "Owner", "Status", "MinorStatus", "ApplicationStatus", "Site"):
        assert column in table.out


def test_repetition_without_input(
    central: CentralHandle, run_cli: CliRunner, steering: Path
) -> None:
    ids = _submit(
        run_cli, central, steering, "reps", "--repetition", "4", "--central", central.target
    )
    assert len(ids) == 4


def test_central_refusals_are_one_line_and_store_nothing(
    central: CentralHandle, run_cli: CliRunner, steering: Path
) -> None:
    base = [str(steering), "-p", "refused", "-s", "release-08-00-00", "--force"]
    base += ["--central", central.target]

    unknown_site = run_cli(gbasf2.main, [*base, "--site", "LCG.NOWHERE.xx"])
    assert unknown_site.code != 0
    assert "unknown site 'LCG.NOWHERE.xx'" in unknown_site.err
    assert unknown_site.err.count("\n") == 1

    unknown_ds = run_cli(gbasf2.main, [*base, "-i", "/belle/user/alice/no_such_ds"])
    assert unknown_ds.code != 0
    assert unknown_ds.err == (
        "gbasf2: error: dataset /belle/user/alice/no_such_ds is unknown or empty\n"
    )

    bad_name = run_cli(gbasf2.main, [str(steering), "-p", "a/b", "-s", "r", "--force"])
    assert bad_name.code == EXIT_USAGE
    assert "bad project name 'a/b'" in bad_name.err

    assert _status_json(run_cli, central, "-p", "refused") == []
    empty = run_cli(gb2_jobs.job_status_main, ["-p", "refused", "--central", central.target])
    assert empty.out.strip() == "0 jobs are selected."


def test_confirmation(central: CentralHandle, run_cli: CliRunner, steering: Path) -> None:
    argv = [str(steering), "-p", "asked", "-s", "release-08-00-00", "--central", central.target]
    declined = run_cli(gbasf2.main, argv, stdin="n\n")
    assert declined.code == EXIT_ABORTED
    assert "Are you sure to submit the project? [Y/n]" in declined.out
    assert _status_json(run_cli, central, "-p", "asked") == []

    accepted = run_cli(gbasf2.main, argv, stdin="\n")  # Enter takes the default: yes
    assert accepted.code == 0, accepted.err
    assert len(_status_json(run_cli, central, "-p", "asked")) == 1


def test_kill_reschedule_delete(central: CentralHandle, run_cli: CliRunner, steering: Path) -> None:
    c = ["--central", central.target]
    first, second, third = _submit(run_cli, central, steering, "actions", "--repetition", "3", *c)

    # Without --force the user is asked; "n" changes nothing.
    kept = run_cli(gb2_jobs.job_kill_main, ["-p", "actions", *c], stdin="n\n")
    assert kept.code == EXIT_ABORTED
    assert "Are you sure to kill 3 job(s)?" in kept.out
    assert {j["status"] for j in _status_json(run_cli, central, "-p", "actions")} == {"Waiting"}

    killed = run_cli(gb2_jobs.job_kill_main, ["-j", f"{first},{second}", "--force", *c])
    assert killed.code == 0, killed.err
    assert f"Job {first}: killed" in killed.out
    assert f"Job {second}: killed" in killed.out
    assert "2 of 2 job(s) killed." in killed.out
    by_id = {j["job_id"]: j for j in _status_json(run_cli, central, "-p", "actions")}
    assert by_id[first]["status"] == by_id[second]["status"] == "Killed"
    assert by_id[third]["status"] == "Waiting"

    resched = run_cli(
        gb2_jobs.job_reschedule_main, ["-p", "actions", "--status", "killed", "--force", *c]
    )
    assert resched.code == 0, resched.err
    assert "2 of 2 job(s) rescheduled." in resched.out
    by_id = {j["job_id"]: j for j in _status_json(run_cli, central, "-p", "actions")}
    assert by_id[first]["status"] == "Waiting"
    assert by_id[first]["attempt"] == 2

    deleted = run_cli(gb2_jobs.job_delete_main, ["-j", str(third), "--force", *c])
    assert deleted.code == 0, deleted.err
    assert f"Job {third}: deleted" in deleted.out
    remaining = {j["job_id"] for j in _status_json(run_cli, central, "-p", "actions")}
    assert remaining == {first, second}
    # A selection is required: never act on "everything" by accident.
    nothing = run_cli(gb2_jobs.job_kill_main, ["--force", *c])
    assert nothing.code == EXIT_USAGE
    assert "select jobs with -p PROJECT" in nothing.err


def test_status_filters(central: CentralHandle, run_cli: CliRunner, steering: Path) -> None:
    c = ["--central", central.target]
    ids = _submit(run_cli, central, steering, "filters", "--repetition", "2", *c)
    run_cli(gb2_jobs.job_kill_main, ["-j", str(ids[0]), "--force", *c])
    killed = _status_json(run_cli, central, "-p", "filters", "--status", "Killed")
    assert [j["job_id"] for j in killed] == [ids[0]]
    by_range = _status_json(run_cli, central, "-j", f"{ids[0]}-{ids[1]}")
    assert [j["job_id"] for j in by_range] == ids
    assert _status_json(run_cli, central, "-p", "filters", "--site", SITE) == []
    bad = run_cli(gb2_jobs.job_status_main, ["--status", "Sleeping", *c])
    assert bad.code == EXIT_USAGE
    assert "unknown job status 'Sleeping'" in bad.err


def test_project_summary(central: CentralHandle, run_cli: CliRunner, steering: Path) -> None:
    c = ["--central", central.target]
    ids = _submit(run_cli, central, steering, "summary", "--repetition", "3", *c)
    run_cli(gb2_jobs.job_kill_main, ["-j", str(ids[0]), "--force", *c])
    result = run_cli(gb2_jobs.project_summary_main, ["-p", "summary", "--json", *c])
    assert result.code == 0, result.err
    [project] = json.loads(result.out)
    assert project["project"] == "summary"
    assert project["owner"] == USER
    assert project["total"] == 3
    assert project["counts"] == {"Waiting": 2, "Killed": 1}

    table = run_cli(gb2_jobs.project_summary_main, c)
    assert table.code == 0
    row = next(line for line in table.out.splitlines() if " summary " in line)
    assert USER in row
    header = next(line for line in table.out.splitlines() if "Project" in line)
    assert "Waiting" in header
    assert "Killed" in header
