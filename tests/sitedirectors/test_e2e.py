"""The director as operators run it: `python -m sitedirectors` with real pilots and wrappers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import tomli_w

from gridpilot.v1 import common_pb2
from sitedirectors.director import Director
from sitedirectors.local import EXIT_CODE_FILE
from tests.sitedirectors.helpers import (
    config_dict,
    director_config,
    job_statuses,
    kill_pilots,
    list_pilots,
    pilot_pids,
    submit_jobs,
    submit_payload_jobs,
    wait_until,
)
from tests.support.central_process import CentralHandle, running_central

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every JWT starts with the base64url of '{"' (its JSON header).
JWT_PREFIX = "eyJ"
PS = common_pb2.PilotState
JS = common_pb2.JobStatus


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralHandle]:
    with running_central(tmp_path / "central") as handle:
        yield handle


@pytest.fixture
def pilots_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "director" / "pilots"
    yield path
    kill_pilots(path)


def test_director_pilots_run_jobs_to_done(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    job_ids, software_setup = submit_payload_jobs(central, tmp_path, 3)
    cfg = director_config(
        tmp_path,
        central,
        pilot={
            # The real pilot ([python, -m, pilot]) with this test's stand-in release.
            "command": [],
            "software_setup": software_setup,
            "idle_timeout": 2.0,
            "extra_args": ["--min-disk-mb", "1", "--kill-grace", "3"],
        },
    )
    director = Director(cfg)
    seen: dict[int, list[str]] = {}

    def cycle_and(probe: Callable[[], bool]) -> Callable[[], bool]:
        def step() -> bool:
            director.run_cycle()
            seen.update(_pilot_session_cmdlines(pilots_dir))
            return probe()

        return step

    try:
        wait_until(
            cycle_and(lambda: job_statuses(central) == [JS.JOB_STATUS_DONE] * 3),
            timeout=90,
            what="jobs Done through director pilots",
        )
        # Idle pilots end on their own (idle timeout), report it and exit 0.
        wait_until(
            cycle_and(
                lambda: (
                    {p.state for p in list_pilots(central)} == {PS.PILOT_STATE_DONE}
                    and all((d / EXIT_CODE_FILE).exists() for d in pilots_dir.iterdir())
                )
            ),
            timeout=60,
            what="pilots Done",
        )
        # They reported their own end; their logs follow once the backend saw them exit.
        wait_until(
            cycle_and(lambda: all(p.log_tail for p in list_pilots(central))),
            timeout=20,
            what="the Done pilots' logs in central",
        )
    finally:
        director.close()
    pilots = list_pilots(central)
    assert len(job_ids) == 3
    assert 1 <= len(pilots) <= 3
    assert sum(p.jobs_run for p in pilots) == 3
    for p in pilots:
        assert p.registered_unix > 0
        exit_code = (pilots_dir / p.pilot_id / EXIT_CODE_FILE).read_text().strip()
        assert exit_code == "0", (pilots_dir / p.pilot_id / "pilot.log").read_text()[-3000:]
        # Each pilot registered with its own single-use token, read from a file and removed.
        assert not (pilots_dir / p.pilot_id / "registration.token").exists()
        log = (pilots_dir / p.pilot_id / "pilot.log").read_text()
        assert "pilot.registered" in log
        assert "pilot.registered" in p.log_tail
    # No token ever appeared on a command line (any local user can read those).
    pilot_cmdlines = [c for c in seen.values() if "pilot" in c]
    assert pilot_cmdlines, "no pilot process was seen running"
    assert all("--token-file" in c for c in pilot_cmdlines)
    assert any("wrapper" in c for c in seen.values()), "no wrapper process was seen running"
    for cmdline in seen.values():
        assert not any(JWT_PREFIX in arg for arg in cmdline), cmdline


def _pilot_session_cmdlines(pilots_dir: Path) -> dict[int, list[str]]:
    """/proc/<pid>/cmdline of the pilots (their launchers' sessions) and of the wrappers
    (own sessions, their --job-dir under pilots_dir), as any user on the node reads them."""
    sessions = set(pilot_pids(pilots_dir))
    found: dict[int, list[str]] = {}
    for proc in psutil.process_iter():
        try:
            raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            cmdline = raw.decode(errors="replace").split("\0")
            if os.getsid(proc.pid) in sessions or any(str(pilots_dir) in a for a in cmdline):
                found[proc.pid] = cmdline
        except (OSError, psutil.Error):
            continue
    return found


def test_sigterm_ends_the_director_not_the_pilots(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    config = tmp_path / "director.toml"
    config.write_text(tomli_w.dumps(config_dict(tmp_path, central)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with (tmp_path / "director.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sitedirectors", "--config", str(config)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: len(list_pilots(central)) == 2 and len(pilot_pids(pilots_dir)) == 2,
            timeout=30,
            what="two pilots",
        )
        time.sleep(1.0)  # a few more cycles: still two
        assert len(list_pilots(central)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log_text = (tmp_path / "director.log").read_text()
    assert "director.stopping" in log_text
    assert "director.stopped" in log_text
    assert all(psutil.pid_exists(pid) for pid in pilot_pids(pilots_dir))
