from __future__ import annotations

from pathlib import Path

from central.logic.failover import backoff, execute_failover_requests
from central.logic.reports import ExitCategory, FinishReport, ReportedOutput, finish_job
from central.models.job_states import JobStatus
from gridpilot.checksum import adler32_of_bytes
from tests.central.logic.helpers import World, world
from tests.support.central_process import FAILOVER_SE, LOCAL_SE
from tests.support.inprocess import run
from wrapper.se import open_storage

LFN = "/belle/user/alice/proj/sub00/out_1_1.root"
DATA = b"physics " * 1000


def se_path(w: World, name: str) -> Path:
    se = w.ses.get(name)
    assert se is not None
    return Path(se.url.removeprefix("file://") + LFN)


async def finished_on_failover(w: World, adler32: str | None = None) -> None:
    """A job whose output went to the failover SE, destined for the local SE."""
    failover = w.ses.get(FAILOVER_SE)
    assert failover is not None
    src = w.store.path.parent / "payload.root"
    src.write_bytes(DATA)
    open_storage(failover.url).upload(src, LFN)
    await w.submit()
    await w.pilot()
    assert await w.match() is not None
    output = ReportedOutput(
        lfn=LFN,
        se=FAILOVER_SE,
        size=len(DATA),
        adler32=adler32 or adler32_of_bytes(DATA),
        destination_se=LOCAL_SE,
    )
    report = FinishReport(job_id=1, attempt=1, category=ExitCategory.SUCCESS, outputs=[output])
    job = await finish_job(w.store, w.ses, report, w.clock())
    assert job.status == JobStatus.COMPLETED


def test_failover_request_replicates_verifies_then_removes_the_copy(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await finished_on_failover(w)
            report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert (report.done, report.retried, report.failed) == (1, 0, 0)
            assert se_path(w, LOCAL_SE).read_bytes() == DATA
            assert not se_path(w, FAILOVER_SE).exists()
            files = await w.store.get_files([LFN])
            assert files[LFN].ses == (LOCAL_SE,)
            (request,) = await w.store.list_failover_requests(job_id=1)
            assert request.status == "Done"
            assert request.attempts == 1
            job = await w.store.get_job(1)
            assert job is not None
            assert job.status == JobStatus.DONE
            # Nothing is due any more.
            again = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert (again.done, again.retried, again.failed) == (0, 0, 0)

    run(body())


def test_unverified_copy_keeps_the_failover_copy_and_retries(tmp_path: Path) -> None:
    overrides = {"central": {"failover_max_attempts": 2, "failover_period": 10.0}}

    async def body() -> None:
        async with world(tmp_path, overrides) as w:
            # The catalog says another checksum than the bytes have: the copy cannot verify.
            await finished_on_failover(w, adler32="deadbeef")
            report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert (report.done, report.retried, report.failed) == (0, 1, 0)
            assert se_path(w, FAILOVER_SE).read_bytes() == DATA
            assert not se_path(w, LOCAL_SE).exists()  # the bad copy was removed
            (request,) = await w.store.list_failover_requests(job_id=1)
            assert request.status == "Waiting"
            assert "does not verify" in request.last_error
            assert request.next_try == w.clock() + 10.0
            # Not due before its back-off has passed.
            report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert report.retried == 0
            w.clock.advance(10.5)
            report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert (report.done, report.retried, report.failed) == (0, 0, 1)
            (request,) = await w.store.list_failover_requests(job_id=1)
            assert request.status == "Failed"
            assert request.attempts == 2
            assert se_path(w, FAILOVER_SE).read_bytes() == DATA
            files = await w.store.get_files([LFN])
            assert files[LFN].ses == (FAILOVER_SE,)
            job = await w.store.get_job(1)
            assert job is not None
            assert job.status == JobStatus.FAILED
            assert job.minor_status == "Failover requests failed"

    run(body())


def test_unwritable_target_waits(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await finished_on_failover(w)
            await w.ses.set_status(w.store, LOCAL_SE, read=True, write=False)
            report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert report.retried == 1
            assert se_path(w, FAILOVER_SE).exists()
            await w.ses.set_status(w.store, LOCAL_SE, read=True, write=True)
            w.clock.advance(3600)
            report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
            assert report.done == 1
            assert not se_path(w, FAILOVER_SE).exists()

    run(body())


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(30.0, n) for n in (1, 2, 3, 4)] == [30.0, 60.0, 120.0, 240.0]
    assert backoff(30.0, 50) == 3600.0
