from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from gridpilot.exit_status import exit_code_of
from gridpilot.v1 import common_pb2, pilots_pb2
from pilot.job import JobStartError, RunningJob, WrapperSettings
from pilot.proctree import sample_tree
from pilot.reports import finish_request

SCRIPTED = WrapperSettings(
    central="127.0.0.1:1",
    site="LCG.TEST.xx",
    software_setup="source /sw/{release}/setup.sh",
    module="tests.pilot.scripted_wrapper",
    ca=Path("/etc/gridpilot/ca.pem"),
)
JOB_TOKEN = "job-token-for-7"


def _matched(action: str, job_id: int = 7, attempt: int = 2) -> pilots_pb2.MatchedJob:
    return pilots_pb2.MatchedJob(
        job_id=job_id,
        attempt=attempt,
        spec=common_pb2.JobSpec(job_name=action, project="p"),
        output_se="SE-A",
        job_token=JOB_TOKEN,
    )


def _start(tmp_path: Path, action: str, **kw: int) -> RunningJob:
    return RunningJob.start(
        _matched(action, **kw), tmp_path, SCRIPTED, cores=1, memory_mb=100, wall_limit=3600.5
    )


async def _wait_for_file(path: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)


async def _wait(job: RunningJob, seconds: float = 20.0) -> int:
    return await asyncio.wait_for(job.wait(), timeout=seconds)


def test_start_writes_job_pb_and_passes_the_contract_arguments(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "report")
        assert await _wait(job) == 0
        assert job.job_dir == tmp_path / "job_7_2"
        # job.pb holds the match without its token; the token is in a private file.
        stored = pilots_pb2.MatchedJob.FromString((job.job_dir / "job.pb").read_bytes())
        expected = _matched("report")
        expected.ClearField("job_token")
        assert stored == expected
        token_file = job.job_dir / "job.token"
        assert token_file.read_text().strip() == JOB_TOKEN
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert job.job_dir.stat().st_mode & 0o777 == 0o700
        argv = json.loads((job.job_dir / "argv.json").read_text())
        assert argv == [
            "--central", "127.0.0.1:1",
            "--job-dir", str(job.job_dir),
            "--site", "LCG.TEST.xx",
            "--token-file", str(token_file),
            "--ca", "/etc/gridpilot/ca.pem",
            "--software-setup", "source /sw/{release}/setup.sh",
            "--wall-limit", "3600",
        ]  # fmt: skip
        assert JOB_TOKEN not in json.dumps(argv)
        assert job.report_done()
        assert "action report" in (job.job_dir / "wrapper.log").read_text()

    asyncio.run(scenario())


def test_wrapper_exit_without_report_is_a_wrapper_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "exit:3")
        returncode = await _wait(job)
        assert returncode == 3
        assert not job.report_done()
        request = finish_request(job, returncode)
        assert request.job_id == 7
        assert request.attempt == 2
        assert request.exit_category == common_pb2.EXIT_CATEGORY_WRAPPER_ERROR
        assert request.exit_code == 3
        assert "exit code 3 without a final report" in request.message
        assert "something went badly wrong" in request.message
        assert request.wall_seconds > 0
        assert request.cpu_seconds > 0  # the wrapper's own Python start-up, from wait4

    asyncio.run(scenario())


def test_kill_on_command_kills_the_tree_and_reports_killed(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "hang")
        await _wait_for_file(job.job_dir / "started")
        job.kill_reason = "user asked"
        started = time.monotonic()
        await job.kill(grace=5.0)
        returncode = await _wait(job)
        assert time.monotonic() - started < 5.0
        assert returncode == -signal.SIGTERM
        assert sample_tree(None, job.pid).processes == 0
        request = finish_request(job, returncode)
        assert request.exit_category == common_pb2.EXIT_CATEGORY_KILLED
        assert request.exit_code == 128 + signal.SIGTERM
        assert "user asked" in request.message

    asyncio.run(scenario())


def test_stubborn_wrapper_gets_sigkill_after_grace(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "stubborn")
        await _wait_for_file(job.job_dir / "started")
        job.terminated_by = "SIGTERM"
        sigkilled = await job.kill(grace=0.5)
        assert job.pid in sigkilled
        returncode = await _wait(job)
        assert returncode == -signal.SIGKILL
        request = finish_request(job, returncode)
        assert request.exit_category == common_pb2.EXIT_CATEGORY_PILOT_TERMINATED
        assert request.message == "pilot terminated (SIGTERM)"
        # A pilot that failed itself is not "told to stop": the job is not rescheduled.
        job.terminated_by = None
        request = finish_request(job, returncode, pilot_error="pilot internal error")
        assert request.exit_category == common_pb2.EXIT_CATEGORY_WRAPPER_ERROR
        assert request.message == "wrapper killed by the pilot: pilot internal error"

    asyncio.run(scenario())


def test_heartbeat_measures_the_whole_tree(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "burn")
        try:
            await _wait_for_file(job.job_dir / "started")
            beat = job.heartbeat(load=0.5)
            assert beat.job_id == 7
            assert beat.attempt == 2
            # The burning child was reaped by the wrapper: its CPU still counts.
            assert beat.cpu_seconds >= 0.55
            assert beat.rss_bytes > 1024 * 1024
            assert beat.wall_seconds > 0
            assert beat.disk_free_bytes > 0
            assert beat.load_average == 0.5
            assert list(beat.stdout_tail) == [f"payload line {i}" for i in range(10, 30)]
        finally:
            await job.kill(grace=1.0)
            await _wait(job)

    asyncio.run(scenario())


def test_a_heartbeat_after_the_job_ended_keeps_its_last_memory(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "burn")
        await _wait_for_file(job.job_dir / "started")
        running = job.heartbeat(load=0.0)
        assert running.rss_bytes > 1024 * 1024
        await job.kill(grace=1.0)
        await _wait(job)
        # No process left to measure: the job used what it was last seen using.
        assert sample_tree(job.pid, job.pid).processes == 0
        assert job.heartbeat(load=0.0).rss_bytes == running.rss_bytes

    asyncio.run(scenario())


def test_leftover_processes_are_killed_after_the_wrapper_exits(tmp_path: Path) -> None:
    async def scenario() -> None:
        job = _start(tmp_path, "hang")
        await _wait_for_file(job.job_dir / "started")
        # Only the wrapper dies; its sleeping child stays behind in the session.
        os.kill(job.pid, signal.SIGKILL)
        await _wait(job)
        assert sample_tree(None, job.pid).processes == 1
        await job.reap_leftovers(grace=2.0)
        assert sample_tree(None, job.pid).processes == 0

    asyncio.run(scenario())


def test_an_old_job_dir_is_moved_aside(tmp_path: Path) -> None:
    async def scenario() -> None:
        old = tmp_path / "job_7_2"
        old.mkdir()
        (old / "report.done").write_text("from an earlier pilot")
        job = _start(tmp_path, "exit:1")
        await _wait(job)
        assert not job.report_done()

    asyncio.run(scenario())
    assert len(list(tmp_path.glob("job_7_2.old-*"))) == 1


def test_start_failure_is_a_job_start_error(tmp_path: Path) -> None:
    settings = WrapperSettings(central="h:1", site="S", python=str(tmp_path / "no-python"))
    with pytest.raises(JobStartError, match="cannot start wrapper for job 7"):
        RunningJob.start(_matched("report"), tmp_path, settings, cores=1, memory_mb=1)


def test_wall_limit_is_passed_in_whole_positive_seconds(tmp_path: Path) -> None:
    assert "--wall-limit" not in SCRIPTED.command(tmp_path, 0.9)
    assert "--wall-limit" not in SCRIPTED.command(tmp_path, None)
    assert SCRIPTED.command(tmp_path, 59.9)[-2:] == ["--wall-limit", "59"]


def test_exit_code_of() -> None:
    assert exit_code_of(0) == 0
    assert exit_code_of(2) == 2
    assert exit_code_of(-9) == 137


def test_insecure_wrapper_command_has_no_ca(tmp_path: Path) -> None:
    settings = WrapperSettings(central="h:1", site="S", ca=tmp_path / "ca.pem", insecure=True)
    argv = settings.command(tmp_path / "job_1_1", wall_limit=None)
    assert "--insecure" in argv
    assert "--ca" not in argv
    assert argv[argv.index("--token-file") + 1] == str(tmp_path / "job_1_1" / "job.token")
