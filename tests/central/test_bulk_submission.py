"""100,000 jobs in one project through SubmitJobs on a real central: all stored, all matchable.

The time is reported (pytest -s), not asserted: the target (< 15 s) is checked by the
benchmark on the reference machine, not by CI hardware."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc
from tests.support.central_process import SITE, running_central

COUNT = 100_000


@pytest.mark.timeout(180)
def test_one_hundred_thousand_jobs_in_one_submission(tmp_path: Path) -> None:
    specs = [
        common_pb2.JobSpec(
            project="bulk",
            release="release-08-00-00",
            job_name=f"job-{n}",
            priority=n % 11,
            sites=[SITE] if n % 2 else [],
            cpu_time=3600,
        )
        for n in range(COUNT)
    ]
    with running_central(tmp_path) as central:
        with central.sync_channel(central.user_token("alice")) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            started = time.monotonic()
            reply = stub.SubmitJobs(jobs_pb2.SubmitJobsRequest(jobs=specs), timeout=120)
            elapsed = time.monotonic() - started
        print(f"\nbulk submission: {COUNT} jobs accepted and committed in {elapsed:.2f} s")
        assert list(reply.job_ids) == list(range(1, COUNT + 1))
        # After a restart the matcher is rebuilt from the compact read: all are waiting.
        central.restart(crash=True)
        central.stop()
    conn = sqlite3.connect(central.data_dir / "central.db")
    try:
        waiting = conn.execute("SELECT count(*) FROM jobs WHERE status = 'Waiting'").fetchone()
        queues = conn.execute("SELECT count(DISTINCT tq_id) FROM jobs").fetchone()
        history = conn.execute("SELECT count(*) FROM job_history").fetchone()
    finally:
        conn.close()
    assert waiting == (COUNT,)
    # Two shapes (with and without a site): two task queues.
    assert queues == (2,)
    assert history == (COUNT,)
    restored = [line for line in central.log_text().splitlines() if "matcher.restored" in line]
    assert restored
    assert f"waiting_jobs={COUNT}" in restored[-1] or f'"waiting_jobs": {COUNT}' in restored[-1]
