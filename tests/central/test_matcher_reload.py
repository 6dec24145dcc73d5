"""SIGHUP reloads the [matcher] section of a running central (a real subprocess)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, pilots_pb2, pilots_pb2_grpc
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle, merge, running_central


def _limit(limit: int, attribute: str = "JobType") -> dict[str, Any]:
    rule = {"site": SITE, "attribute": attribute, "value": "User", "limit": limit}
    return {"matcher": {"running_limits": [rule]}}


def _hangup(central: CentralHandle, overrides: dict[str, Any], expect: str) -> None:
    before = central.log_text().count(expect)
    central.config_path.write_text(tomli_w.dumps(merge(central.config, overrides)))
    os.kill(central.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while central.log_text().count(expect) == before:
        assert time.monotonic() < deadline, f"no {expect} in the log:\n{central.log_text()}"
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_sighup_applies_running_limits_and_refuses_an_invalid_file(tmp_path: Path) -> None:
    with running_central(tmp_path) as central:
        with central.sync_channel(central.user_token("alice")) as channel:
            spec = common_pb2.JobSpec(project="p", release="r1")
            jobs_pb2_grpc.JobServiceStub(channel).SubmitJobs(
                jobs_pb2.SubmitJobsRequest(jobs=[spec] * 6), timeout=10
            )
        token = central.mint("pilot", "p1", pilot_id="p1", site=SITE, ce=CE, queue=QUEUE)
        with central.sync_channel(token) as channel:
            pilots = pilots_pb2_grpc.PilotServiceStub(channel)
            request = pilots_pb2.RequestJobRequest(
                pilot_id="p1",
                resources=common_pb2.ResourceDescription(
                    site=SITE, ce=CE, queue=QUEUE, cpu_time_left=86400, cores=1, memory_mb=4096
                ),
            )

            def matched() -> int:
                return pilots.RequestJob(request, timeout=5).job.job_id

            assert matched() == 1
            _hangup(central, _limit(2), "central.reloaded")
            assert matched() == 2
            assert matched() == 0  # two User jobs hold the site's two slots
            # Invalid: refused, logged, and the limit of 2 stays in force.
            _hangup(central, _limit(5, attribute="Colour"), "central.reload_refused")
            assert central.running
            assert matched() == 0
            _hangup(central, _limit(3), "central.reloaded")
            assert matched() == 3
            assert matched() == 0
        assert "matcher.configured" in central.log_text()
