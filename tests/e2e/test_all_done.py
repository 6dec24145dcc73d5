"""The whole loop on two sites: a dataset submitted with gbasf2, pilots from two site directors,
every job Done, every output registered, stored and verified, then downloaded with gb2_ds_get."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes, adler32_of_file
from gridpilot.demo.basf2_standin import OUTPUT_MAGIC
from gridpilot.v1 import common_pb2, sitedirectors_pb2
from tests.support.e2e_grid import OWNER, RELEASE, SITE_A, SITE_B, Grid, e2e_grid, status_name

pytestmark = pytest.mark.e2e

PROJECT = "e2e_all_done"
DATASET = "/belle/MC/e2e/mixed/sub00"
N_FILES = 6
HAPPY_PATH = ["WAITING", "MATCHED", "RUNNING", "COMPLETING", "DONE"]


def test_dataset_project_runs_to_done_with_verified_outputs(tmp_path: Path) -> None:
    with e2e_grid(tmp_path) as grid:
        # Half of the dataset on each site's SE: some jobs must read from the other site.
        inputs = {
            f"{DATASET}/mdst_{i:06d}.root": (
                (SITE_A if i % 2 else SITE_B).se,
                os.urandom(3000 + 17 * i),
            )
            for i in range(N_FILES)
        }
        grid.register_files(inputs)
        steering = grid.write_steering()
        submitted = grid.cli(
            "gbasf2", str(steering), "-p", PROJECT, "-s", RELEASE, "-i", DATASET,
            "--basf2opt", "-n 20", "--force",
        )  # fmt: skip
        assert submitted.code == 0, submitted
        assert f"{N_FILES} job(s) submitted to project {PROJECT}" in submitted.out
        job_ids = sorted(grid.statuses(PROJECT))
        assert len(job_ids) == N_FILES

        grid.start_director(SITE_A)
        grid.start_director(SITE_B)
        grid.wait_statuses(job_ids, {"DONE"}, timeout=90)

        for job_id in job_ids:
            check_done_job(grid, job_id, inputs)

        # Pilots of both sites took part, ran six jobs between them, then ended on their own.
        def pilots_ended() -> list[sitedirectors_pb2.PilotRecord] | None:
            reply = grid.call(
                grid.admin.site_directors.ListPilots,
                sitedirectors_pb2.ListPilotsRequest(),
                client=grid.admin,
            )
            pilots = list(reply.pilots)
            final = {common_pb2.PILOT_STATE_DONE}
            return pilots if pilots and all(p.state in final for p in pilots) else None

        pilots = grid.wait(pilots_ended, timeout=30, what="idle pilots to end")
        assert {p.site for p in pilots} == {SITE_A.name, SITE_B.name}
        assert sum(p.jobs_run for p in pilots) == N_FILES

        # One job directory per job, all first attempts.
        assert sorted(grid.job_dirs()) == [(job_id, 1) for job_id in job_ids]

        got = grid.cli("gb2_ds_get", PROJECT, "-d", str(tmp_path / "download"))
        assert got.code == 0, got
        assert f"{N_FILES} downloaded, 0 skipped (already present and verified), 0 failed" in (
            got.out
        )
        for job_id in job_ids:
            (output,) = grid.job(job_id).outputs
            local = tmp_path / "download" / PROJECT / "sub00" / output.lfn.rsplit("/", 1)[1]
            assert local.read_bytes() == grid.se_path(output.se, output.lfn).read_bytes()


def check_done_job(grid: Grid, job_id: int, inputs: dict[str, tuple[str, bytes]]) -> None:
    answer = grid.job(job_id)
    job = answer.job
    history = [status_name(h.status) for h in answer.history]
    # Minor-status updates repeat a status; the path itself must be the happy one.
    assert list(dict.fromkeys(history)) == HAPPY_PATH, (job_id, history)
    assert history[-1] == "DONE"
    assert job.attempt == 1
    site = SITE_A if job.site == SITE_A.name else SITE_B
    assert job.site == site.name

    (output,) = answer.outputs
    assert output.lfn == f"/belle/user/{OWNER}/{PROJECT}/sub00/output_{job_id}_1.root"
    # Stored on the site's output SE, registered with what is really there.
    assert output.se == site.se
    entry = grid.catalog_entry(output.lfn)
    assert entry is not None, f"{output.lfn} is not registered"
    assert [r.se for r in entry.replicas] == [site.se]
    stored = grid.se_path(site.se, output.lfn)
    assert stored.stat().st_size == entry.size == output.size
    assert adler32_of_file(stored) == entry.adler32 == output.adler32

    # The payload read exactly the job's own input file, whole.
    (input_lfn,) = answer.spec.input_lfns
    _se, data = inputs[input_lfn]
    lines = stored.read_text().splitlines()
    assert lines[0] == OUTPUT_MAGIC
    name = input_lfn.rsplit("/", 1)[1]
    assert f"input {name} {len(data)} {adler32_of_bytes(data)}" in lines
    assert "events 20" in lines
