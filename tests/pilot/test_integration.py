"""The pilot against a real central (subprocess), with the real wrapper and a stand-in basf2."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from gridpilot.channel import write_token_file
from gridpilot.cli import main as umbrella
from gridpilot.v1 import common_pb2
from pilot.exit_codes import PilotExitCode
from pilot.logtail import tail_lines
from tests.pilot.support import (
    grid_client,
    pilot_log,
    pilot_process,
    registration_token_file,
    session_members,
    wait_until,
    wrapper_sessions,
)
from tests.support.central_process import running_central

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_runs_jobs_on_free_slots_heartbeats_and_ends_when_idle(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        ids = grid.submit(2, "-n 30 --standin-seconds 2")
        work = tmp_path / "work"
        with pilot_process(grid, work, "--slots", "2", "--idle-timeout", "1") as pilot:
            assert pilot.wait(60) == PilotExitCode.OK, pilot_log(work)
        log = pilot_log(work)
        for job_id in ids:
            answer = grid.job(job_id)
            assert answer.job.status == common_pb2.JOB_STATUS_DONE, answer
            beat = answer.last_heartbeat
            assert beat.wall_seconds > 0.5
            assert beat.rss_bytes > 1024 * 1024
            assert any("[INFO] Processed event" in line for line in beat.stdout_tail)
            job_dir = work / f"job_{job_id}_1"
            assert (job_dir / "job.pb").is_file()
            # The wrapper took its job token and removed it: the payload never saw it.
            assert not (job_dir / "job.token").exists()
        # Both ran at once on the two slots.
        starts = [line for line in log.splitlines() if "job.started" in line]
        assert len(starts) == 2
        assert "session.opened" in log
        assert 'reason="idle for' in log
        [record] = grid.pilots()
        assert record.state == common_pb2.PILOT_STATE_DONE
        assert record.jobs_run == 2
        # Its registration token was read once and removed.
        assert not (tmp_path / "work.registration.token").exists()


def test_a_registration_token_registers_one_pilot_only(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        first, second = tmp_path / "first", tmp_path / "second"
        token = registration_token_file(grid, first)
        copy = tmp_path / "stolen.token"
        copy.write_bytes(token.read_bytes())
        copy.chmod(0o600)
        with pilot_process(grid, first, "--idle-timeout", "0.5", token_file=token) as pilot:
            assert pilot.wait(60) == PilotExitCode.OK, pilot_log(first)
        with pilot_process(grid, second, "--idle-timeout", "0.5", token_file=copy) as pilot:
            assert pilot.wait(60) == PilotExitCode.REGISTRATION_FAILED, pilot_log(second)
        log = pilot_log(second)
        assert "pilot.registration_refused" in log
        assert "UNAUTHENTICATED" in log
        assert "registration token already used" in log
        assert len(grid.pilots()) == 1


def test_kill_command_kills_the_whole_payload_tree(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        [job_id] = grid.submit(1, "-n 100 --standin-seconds 120")
        work = tmp_path / "work"
        with pilot_process(grid, work, "--slots", "1", "--idle-timeout", "1") as pilot:
            grid.wait_status(job_id, "RUNNING")
            payload_log = work / f"job_{job_id}_1" / "payload.log"
            wait_until(
                lambda: any("Processed event" in line for line in tail_lines(payload_log)),
                what="the payload's first events",
            )
            [session] = wrapper_sessions(work)
            members = session_members(session)
            assert any("basf2" in " ".join(p.cmdline()) for p in members)
            started = time.monotonic()
            grid.kill(job_id)
            assert grid.wait_status(job_id, "KILLED", timeout=20) == "KILLED"
            assert time.monotonic() - started < 15
            wait_until(lambda: not session_members(session), timeout=10, what="tree gone")
            assert pilot.wait(30) == PilotExitCode.OK
        log = pilot_log(work)
        assert "KIND_KILL_JOB" in log
        assert "job.killing" in log


def test_sigterm_kills_running_jobs_reschedules_them_and_exits_terminated(
    tmp_path: Path,
) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        [job_id] = grid.submit(1, "-n 100 --standin-seconds 120")
        work = tmp_path / "work"
        with pilot_process(grid, work, "--slots", "1") as pilot:
            grid.wait_status(job_id, "RUNNING")
            [session] = wrapper_sessions(work)
            pilot.send_signal(signal.SIGTERM)
            assert pilot.wait(30) == PilotExitCode.TERMINATED, pilot_log(work)
            assert not session_members(session)
        # The batch system stopped the pilot, not the job: the job is waiting for attempt 2.
        answer = grid.job(job_id)
        assert answer.job.status == common_pb2.JOB_STATUS_WAITING, answer.job
        assert answer.job.attempt == 2
        assert answer.job.minor_status == "Pilot terminated: job rescheduled"
        statuses = [h.status for h in answer.history]
        assert statuses[-3:] == [
            common_pb2.JOB_STATUS_RUNNING,
            common_pb2.JOB_STATUS_RESCHEDULED,
            common_pb2.JOB_STATUS_WAITING,
        ], answer.history
        assert "EXIT_CATEGORY_PILOT_TERMINATED" in pilot_log(work)
        [record] = grid.pilots()
        assert record.state == common_pb2.PILOT_STATE_DONE
        assert "terminated (SIGTERM)" in record.status_reason


def test_drain_finishes_the_running_job_and_takes_no_new_one(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        first, second = grid.submit(2, "-n 20 --standin-seconds 3")
        work = tmp_path / "work"
        with pilot_process(grid, work, "--slots", "1") as pilot:
            running = wait_until(
                lambda: [j for j in (first, second) if grid.status(j) == "RUNNING"],
                what="one job running",
            )
            pilot.send_signal(signal.SIGUSR1)
            assert pilot.wait(30) == PilotExitCode.OK, pilot_log(work)
        other = second if running == [first] else first
        assert grid.status(running[0]) == "DONE"
        assert grid.status(other) == "WAITING"
        assert 'reason="drained (SIGUSR1)"' in pilot_log(work)


def test_admin_drain_reaches_the_pilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gridpilot admin drain --pilot ID` as an operator: central tells the pilot on its
    session, the pilot takes no new job and ends."""
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        work = tmp_path / "work"
        admin_token = tmp_path / "ops.token"
        write_token_file(admin_token, central.admin_token())
        monkeypatch.setenv("GRIDPILOT_CA", str(central.ca_path))
        argv = ["admin", "drain", "--pilot", "p-drain", "--central", central.target]
        argv += ["--token-file", str(admin_token)]
        with pilot_process(grid, work, "--pilot-id", "p-drain", "--idle-timeout", "600") as pilot:
            wait_until(lambda: "session.opened" in pilot_log(work), what="the session")
            assert umbrella.main(argv) == 0
            assert capsys.readouterr().out.splitlines() == ["p-drain", "1 pilot(s) told to drain"]
            assert pilot.wait(30) == PilotExitCode.OK, pilot_log(work)
        assert "KIND_DRAIN" in pilot_log(work)
        assert 'reason="drained' in pilot_log(work)


@pytest.mark.parametrize("crash", [False, True], ids=["graceful", "crash"])
def test_job_survives_a_central_restart(tmp_path: Path, crash: bool) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        [job_id] = grid.submit(1, "-n 40 --standin-seconds 5")
        work = tmp_path / "work"
        with pilot_process(grid, work, "--slots", "1", "--idle-timeout", "1") as pilot:
            grid.wait_status(job_id, "RUNNING")
            central.restart(crash=crash)
            assert pilot.wait(60) == PilotExitCode.OK, pilot_log(work)
        assert grid.status(job_id) == "DONE"
        log = pilot_log(work)
        assert log.count("session.opened") >= 2, log


def test_max_jobs_ends_the_pilot_after_that_many(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        first, second = grid.submit(2, "-n 5")
        work = tmp_path / "work"
        extra = ("--slots", "1", "--max-jobs", "1", "--pilot-id", "director-given-id")
        with pilot_process(grid, work, *extra) as pilot:
            assert pilot.wait(60) == PilotExitCode.OK, pilot_log(work)
        assert sorted([grid.status(first), grid.status(second)]) == ["DONE", "WAITING"]
        assert 'reason="max jobs reached (1)"' in pilot_log(work)
        [record] = grid.pilots()
        assert record.pilot_id == "director-given-id"
        assert record.jobs_run == 1


def test_unknown_site_is_a_registration_failure(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        work = tmp_path / "work"
        # The director's token (and so the pilot's) names the site; central knows no such one.
        token = registration_token_file(grid, work, site="NO.SUCH.site")
        with pilot_process(grid, work, "--site", "NO.SUCH.site", token_file=token) as pilot:
            assert pilot.wait(30) == PilotExitCode.REGISTRATION_FAILED
        assert "pilot.registration_refused" in pilot_log(work)
        assert "INVALID_ARGUMENT" in pilot_log(work)


def test_central_gone_for_good_ends_an_idle_pilot(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        work = tmp_path / "work"
        extra = ("--idle-timeout", "600", "--unreachable-timeout", "2")
        with pilot_process(grid, work, *extra) as pilot:
            wait_until(lambda: "session.opened" in pilot_log(work), what="the session")
            central.stop()
            assert pilot.wait(30) == PilotExitCode.CENTRAL_UNREACHABLE, pilot_log(work)
        log = pilot_log(work)
        assert "central.retry" in log
        assert 'reason="central unreachable"' in log
