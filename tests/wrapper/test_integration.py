"""The wrapper end to end: a real central, a job submitted and matched through its RPCs, and
`python -m wrapper` run as a real process on the job directory with the stand-in basf2."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gridpilot.checksum import adler32_of_bytes, adler32_of_file
from gridpilot.demo.basf2_standin import OUTPUT_MAGIC
from gridpilot.v1 import (
    common_pb2,
    data_pb2,
    jobs_pb2,
)
from tests.support.central_process import (
    FAILOVER_SE,
    LOCAL_SE,
    SITE,
    default_config,
    running_central,
)
from tests.wrapper.grid import (
    OWNER,
    PROJECT,
    WRAPPER_TIMEOUT,
    Grid,
    refuse_writes,
)
from tests.wrapper.helpers import subprocess_env

pytestmark = pytest.mark.e2e

OTHER_SE = "OTHER-SE"
S = common_pb2.JobStatus


@pytest.fixture
def grid(tmp_path: Path, software_setup: str) -> Iterator[Grid]:
    storage = default_config(tmp_path)["storage_elements"]
    storage.append({"name": OTHER_SE, "site": SITE, "url": f"file://{tmp_path / 'se' / 'other'}"})
    overrides = {
        # No pilot heartbeats here: keep central from stalling the jobs meanwhile.
        "central": {"stalled_after": 300.0, "reschedule_stalled_after": 300.0},
        "storage_elements": storage,
    }
    with running_central(tmp_path, overrides) as central:
        g = Grid(central, tmp_path, software_setup)
        try:
            yield g
        finally:
            g.close()


def test_job_done_with_output_on_destination_se(grid: Grid) -> None:
    data = b"raw events " * 2000
    lfn = "/belle/data/run1/input1.root"
    grid.put_file(lfn, data, {LOCAL_SE: data})
    matched = grid.submit_and_match(input_lfns=[lfn], basf2_options="-n 7")
    assert grid.run_wrapper(matched) == 0, grid.logs(matched)
    job_dir = grid.job_dir(matched)
    assert (job_dir / "report.done").exists()
    response = grid.get_job(matched.job_id)
    assert response.job.status == S.JOB_STATUS_DONE, grid.logs(matched)
    assert response.job.output_sandbox
    expected_lfn = f"/belle/user/{OWNER}/{PROJECT}/sub00/output_{matched.job_id}_1.root"
    (out,) = response.outputs
    assert (out.lfn, out.se) == (expected_lfn, LOCAL_SE)
    stored = grid.se_path(LOCAL_SE, expected_lfn)
    assert stored.read_bytes().decode().startswith(OUTPUT_MAGIC)
    assert adler32_of_file(stored) == out.adler32
    assert stored.stat().st_size == out.size
    # The payload read the staged-in input and ran the requested events.
    assert f"input input1.root {len(data)} {adler32_of_bytes(data)}" in stored.read_text()
    assert "[INFO] Processed event 7" in (job_dir / "payload.log").read_text()
    assert sorted(grid.output_sandbox_names(response.job.output_sandbox)) == [
        "payload.log",
        "wrapper.log",
    ]
    minors = [h.minor_status for h in response.history]
    assert "Application" in minors
    assert "Uploading outputs" in minors
    # The catalog knows the new file.
    replicas = grid.data.GetReplicas(
        data_pb2.GetReplicasRequest(lfns=[expected_lfn], site=SITE), timeout=10
    )
    assert [r.se for r in replicas.files[0].replicas] == [LOCAL_SE]


def test_failover_when_destination_refuses_writes(grid: Grid) -> None:
    matched = grid.submit_and_match(basf2_options="-n 3")
    assert matched.output_se == LOCAL_SE
    assert list(matched.failover_ses) == [FAILOVER_SE]
    refuse_writes(grid.central.se_dirs[LOCAL_SE])
    assert grid.run_wrapper(matched) == 0, grid.logs(matched)
    response = grid.get_job(matched.job_id)
    expected_lfn = f"/belle/user/{OWNER}/{PROJECT}/sub00/output_{matched.job_id}_1.root"
    (out,) = response.outputs
    assert (out.lfn, out.se) == (expected_lfn, FAILOVER_SE)
    stored = grid.se_path(FAILOVER_SE, expected_lfn)
    assert adler32_of_file(stored) == out.adler32
    # Central queued the replication to the intended destination.
    requests = grid.data.ListFailoverRequests(
        data_pb2.ListFailoverRequestsRequest(job_id=matched.job_id), timeout=10
    ).requests
    assert [(r.lfn, r.source_se, r.target_se) for r in requests] == [
        (expected_lfn, FAILOVER_SE, LOCAL_SE)
    ]
    assert response.job.status in (S.JOB_STATUS_COMPLETED, S.JOB_STATUS_DONE)
    assert "stageout.se_failed" in grid.logs(matched)


def test_corrupted_replica_skipped_for_next(grid: Grid) -> None:
    data = b"good events " * 1000
    bad = bytearray(data)
    bad[100] ^= 0x55
    lfn = "/belle/data/run2/input2.root"
    # The local (first-ranked) copy is corrupted; the other SE holds a good one.
    grid.put_file(lfn, data, {LOCAL_SE: bytes(bad), OTHER_SE: data})
    matched = grid.submit_and_match(input_lfns=[lfn], basf2_options="-n 2")
    assert grid.run_wrapper(matched) == 0, grid.logs(matched)
    assert grid.get_job(matched.job_id).job.status == S.JOB_STATUS_DONE, grid.logs(matched)
    log = (grid.job_dir(matched) / "wrapper.log").read_text()
    assert f"stagein.bad_replica lfn={lfn} se={LOCAL_SE}" in log
    assert f"stagein.done lfn={lfn} se={OTHER_SE}" in log
    assert (grid.job_dir(matched) / "work" / "input2.root").read_bytes() == data
    # Central heard of the bad copy: it is read last from now on; its check (which may have
    # run already) confirms it.
    [file] = grid.data.GetReplicas(
        data_pb2.GetReplicasRequest(lfns=[lfn], site=SITE), timeout=10
    ).files
    assert [r.se for r in file.replicas] == [OTHER_SE, LOCAL_SE]
    reason = file.replicas[1].rank_reason
    assert reason.startswith("suspect: ")
    assert f"reported by job {matched.job_id}" in reason or "confirmed: adler32" in reason


def test_no_good_replica_fails_as_input_data_unavailable(grid: Grid) -> None:
    data = b"x" * 3000
    lfn = "/belle/data/run3/input3.root"
    grid.put_file(lfn, data, {LOCAL_SE: b"y" * 3000})
    matched = grid.submit_and_match(input_lfns=[lfn])
    assert grid.run_wrapper(matched) == 0, grid.logs(matched)
    job = grid.get_job(matched.job_id).job
    assert job.status == S.JOB_STATUS_FAILED
    assert job.minor_status == "Input Data Not Available"
    assert not (grid.job_dir(matched) / "payload.log").exists()


def test_application_error_fails_job(grid: Grid) -> None:
    matched = grid.submit_and_match(basf2_options="-n 2 --standin-exit-code 3")
    assert grid.run_wrapper(matched) == 0, grid.logs(matched)
    response = grid.get_job(matched.job_id)
    assert response.job.status == S.JOB_STATUS_FAILED
    assert response.job.minor_status == "Application Finished With Errors"
    assert "exit code 3" in response.job.application_status
    assert list(response.outputs) == []
    assert (grid.job_dir(matched) / "report.done").exists()


def test_watchdog_wall_limit_fails_job(grid: Grid) -> None:
    matched = grid.submit_and_match(basf2_options="-n 10 --standin-seconds 60")
    started = time.monotonic()
    assert grid.run_wrapper(matched, "--wall-limit", "1") == 0, grid.logs(matched)
    assert time.monotonic() - started < 30
    job = grid.get_job(matched.job_id).job
    assert job.status == S.JOB_STATUS_FAILED
    assert job.minor_status == "Killed by Watchdog"
    assert "wall clock limit exceeded" in job.application_status


def test_watchdog_looping_limit_fails_job(grid: Grid) -> None:
    """A payload that writes nothing (no file, no log line) past --looping-limit."""
    matched = grid.submit_and_match(basf2_options="-n 2 --standin-seconds 60")
    started = time.monotonic()
    assert grid.run_wrapper(matched, "--looping-limit", "2") == 0, grid.logs(matched)
    assert time.monotonic() - started < 40
    job = grid.get_job(matched.job_id).job
    assert job.status == S.JOB_STATUS_FAILED
    assert job.minor_status == "Killed by Watchdog"
    assert "payload looping: no file written for" in job.application_status


def test_report_survives_central_restart(grid: Grid) -> None:
    matched = grid.submit_and_match(basf2_options="-n 4 --standin-seconds 1.5")
    proc = grid.start_wrapper(matched)
    payload_log = grid.job_dir(matched) / "payload.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Starting event processing" not in (
        payload_log.read_text() if payload_log.exists() else ""
    ):
        time.sleep(0.05)
    # Central goes away while the payload runs and comes back only after it ended.
    grid.central.stop()
    while time.monotonic() < deadline and "finished successfully" not in payload_log.read_text():
        time.sleep(0.05)
    time.sleep(1.0)
    grid.central.start()
    assert proc.wait(timeout=WRAPPER_TIMEOUT) == 0, grid.logs(matched)
    grid.reconnect()
    assert grid.get_job(matched.job_id).job.status == S.JOB_STATUS_DONE, grid.logs(matched)
    assert "central.retrying" in grid.logs(matched)


def test_sigterm_kills_payload_and_leaves_the_report_to_the_pilot(grid: Grid) -> None:
    matched = grid.submit_and_match(basf2_options="-n 10 --standin-seconds 60")
    proc = grid.start_wrapper(matched)
    payload_log = grid.job_dir(matched) / "payload.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Starting event processing" not in (
        payload_log.read_text() if payload_log.exists() else ""
    ):
        time.sleep(0.05)
    payload = psutil.Process(proc.pid).children(recursive=True)
    assert payload
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM, grid.logs(matched)
    _gone, alive = psutil.wait_procs(payload, timeout=10)
    assert alive == []
    assert not (grid.job_dir(matched) / "report.done").exists()
    assert grid.get_job(matched.job_id).job.status == S.JOB_STATUS_RUNNING


def test_stale_attempt_report_refused(grid: Grid) -> None:
    matched = grid.submit_and_match(basf2_options="-n 1")
    grid.jobs.RescheduleJobs(
        jobs_pb2.RescheduleJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[matched.job_id])),
        timeout=10,
    )
    # The wrapper of the old attempt runs, but central refuses its report: no report.done.
    assert grid.run_wrapper(matched) == 3, grid.logs(matched)
    assert not (grid.job_dir(matched) / "report.done").exists()
    assert "job.report_failed" in grid.logs(matched)


def test_bad_job_file(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.pb").write_bytes(b"\xff\xff not a protobuf")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "wrapper", "--central", "127.0.0.1:1"),
            *("--job-dir", str(job_dir), "--site", SITE, "--insecure"),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 4
    assert "wrapper.bad_job_file" in proc.stderr
