"""Stage-out failover end to end: the destination SE refuses writes, the output lands on the
failover SE, and central's failover agent moves it to the destination once it is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_file
from gridpilot.v1 import data_pb2
from tests.support.e2e_grid import FAILOVER_SE, OWNER, RELEASE, SITE_A, e2e_grid

pytestmark = pytest.mark.e2e

PROJECT = "e2e_failover"


def refuse_writes(root: Path) -> Path:
    """The SE's root directory replaced by a regular file: every write fails."""
    away = root.with_name(root.name + ".away")
    root.rename(away)
    root.write_text("this SE is down\n")
    return away


def restore(root: Path, away: Path) -> None:
    root.unlink()
    away.rename(root)


def test_output_goes_to_failover_then_to_its_destination(tmp_path: Path) -> None:
    with e2e_grid(tmp_path) as grid:
        destination = grid.central.se_dirs[SITE_A.se]
        failover = grid.central.se_dirs[FAILOVER_SE]
        away = refuse_writes(destination)
        steering = grid.write_steering()
        submitted = grid.cli(
            "gbasf2", str(steering), "-p", PROJECT, "-s", RELEASE, "--repetition", "1",
            "--basf2opt", "-n 10", "--force",
        )  # fmt: skip
        assert submitted.code == 0, submitted
        (job_id,) = grid.statuses(PROJECT)
        lfn = f"/belle/user/{OWNER}/{PROJECT}/sub00/output_{job_id}_1.root"
        grid.start_pilot(SITE_A, "pilot-a")

        grid.wait_statuses([job_id], {"COMPLETED"}, timeout=60)
        job = grid.job(job_id)
        assert job.job.minor_status == "Pending Requests"
        (output,) = job.outputs
        assert (output.lfn, output.se) == (lfn, FAILOVER_SE)
        (request,) = grid.failover_requests(job_id)
        assert (request.lfn, request.source_se, request.target_se) == (lfn, FAILOVER_SE, SITE_A.se)
        assert request.status == "Waiting"
        # The only copy is on the failover SE, registered there with its real size and sum.
        assert grid.replicas([lfn]) == {lfn: [FAILOVER_SE]}
        on_failover = failover / lfn.lstrip("/")
        assert on_failover.stat().st_size == output.size
        assert adler32_of_file(on_failover) == output.adler32
        # While the destination is down the job stays Completed; the agent keeps retrying.
        grid.wait(
            lambda: all(r.attempts >= 2 for r in grid.failover_requests(job_id)),
            timeout=20,
            what="failover retries against the broken SE",
        )
        assert grid.statuses(PROJECT)[job_id] == "COMPLETED"

        restore(destination, away)
        grid.wait_statuses([job_id], {"DONE"}, timeout=30)
        (request,) = grid.failover_requests(job_id)
        assert request.status == "Done"
        # Only the destination copy is left, verified, and the catalog says so.
        assert grid.replicas([lfn]) == {lfn: [SITE_A.se]}
        assert not on_failover.exists()
        on_destination = destination / lfn.lstrip("/")
        entry = grid.catalog_entry(lfn)
        assert isinstance(entry, data_pb2.FileReplicas)
        assert on_destination.stat().st_size == entry.size == output.size
        assert adler32_of_file(on_destination) == entry.adler32 == output.adler32
        history = grid.history(job_id)
        assert history[-2:] == ["COMPLETED", "DONE"], history
