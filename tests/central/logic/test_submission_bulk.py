"""Submission's per-job work: owner forced onto the stored spec, keys shared per shape."""

from __future__ import annotations

from pathlib import Path

from central.logic.identity import Caller
from central.logic.submission import decode_spec, submit_jobs
from central.matcher import decode_requirements
from gridpilot.security.claims import Role
from gridpilot.v1 import common_pb2
from tests.central.logic.helpers import world
from tests.support.central_process import SITE
from tests.support.inprocess import run


def test_stored_spec_has_the_callers_identity_and_keeps_the_rest(tmp_path: Path) -> None:
    async def body() -> list[tuple[common_pb2.JobSpec, bytes, str]]:
        async with world(tmp_path) as w:
            forged = common_pb2.JobSpec(
                project="p",
                release="r1",
                owner="mallory",
                group="belle_admin",
                job_name="j",
                sites=[SITE],
                tags=["GPU"],
                input_lfns=[],
            )
            plain = common_pb2.JobSpec(project="p", release="r1", job_name="k", priority=4)
            ids = await w.submit_specs([forged, plain, forged])
            out = []
            for job_id in ids:
                job = await w.store.get_job(job_id)
                assert job is not None
                out.append((decode_spec(job.spec, job_id), job.requirements, job.job_type))
            return out

    stored = run(body())
    for spec, _, job_type in stored:
        assert (spec.owner, spec.group, spec.job_type) == ("alice", "belle_user", "User")
        assert job_type == "User"
    assert [s.job_name for s, _, _ in stored] == ["j", "k", "j"]
    assert list(stored[0][0].sites) == [SITE]
    assert list(stored[0][0].tags) == ["GPU"]
    # Same shape, same key bytes; the key names the caller, not the forged owner.
    assert stored[0][1] == stored[2][1] != stored[1][1]
    key = decode_requirements(stored[0][1])
    assert (key.owner, key.group, key.job_type, key.tags) == (
        "alice",
        "belle_user",
        "User",
        ("GPU",),
    )


def test_a_caller_without_group_clears_a_forged_group(tmp_path: Path) -> None:
    async def body() -> common_pb2.JobSpec:
        async with world(tmp_path) as w:
            caller = Caller("root", Role.ADMIN, group="")
            forged = common_pb2.JobSpec(project="p", release="r1", group="belle_user")
            (job_id,) = await submit_jobs(
                w.store, w.matcher, w.config, caller=caller, specs=[forged], now=1.0
            )
            job = await w.store.get_job(job_id)
            assert job is not None
            return decode_spec(job.spec, job_id)

    spec = run(body())
    assert (spec.owner, spec.group) == ("root", "")
