"""Data requests beyond failover replications: removals and checks, per-LFN ordering, and
replications that pick up where a crashed attempt stopped."""

from __future__ import annotations

import os
from pathlib import Path

from central.logic.data import SuspectReport, remove_files, report_suspects
from central.logic.failover import execute_failover_requests
from central.logic.identity import Caller
from central.store.records import CHECK, REMOVE, FileRecord, NewFailoverRequest
from gridpilot.checksum import adler32_of_bytes
from gridpilot.security.claims import Role
from tests.central.logic.helpers import ALICE, World, world
from tests.support.central_process import FAILOVER_SE, LOCAL_SE
from tests.support.inprocess import run
from wrapper.se import open_storage

LFN = "/belle/user/alice/proj/sub00/out_1_1.root"
DATA = b"physics " * 1000
BOB = Caller("bob", Role.USER, group="belle_user")
PRODUCTION = Caller("prod", Role.PRODUCTION, group="belle_production")


def se_path(w: World, name: str, lfn: str = LFN) -> Path:
    se = w.ses.get(name)
    assert se is not None
    return Path(se.url.removeprefix("file://") + lfn)


async def stored(w: World, *ses: str, lfn: str = LFN, data: bytes = DATA) -> None:
    """The file on these SEs and in the catalog."""
    src = w.store.path.parent / "payload.root"
    src.write_bytes(data)
    for name in ses:
        se = w.ses.get(name)
        assert se is not None
        open_storage(se.url).upload(src, lfn)
    await w.store.add_files(
        [FileRecord(lfn=lfn, size=len(data), adler32=adler32_of_bytes(data), ses=ses)]
    )


async def run_all(w: World) -> tuple[int, int, int]:
    report = await execute_failover_requests(w.store, w.ses, w.config, w.clock)
    return report.done, report.retried, report.failed


def test_removal_deletes_every_copy_then_the_catalog_entry(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, LOCAL_SE, FAILOVER_SE)
            [removal] = await remove_files(w.store, ALICE, [LFN], w.clock())
            assert removal.request_id
            assert not removal.error
            assert await run_all(w) == (1, 0, 0)
            assert not se_path(w, LOCAL_SE).exists()
            assert not se_path(w, FAILOVER_SE).exists()
            assert await w.store.get_files([LFN]) == {}
            [request] = await w.store.list_failover_requests(request_ids=[removal.request_id])
            assert (request.status, request.operation, request.owner) == ("Done", REMOVE, "alice")

    run(body())


def test_removal_is_refused_per_file_outside_the_callers_directory(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, LOCAL_SE)
            results = await remove_files(
                w.store, BOB, [LFN, "/belle/user/bob/x.root", "not-an-lfn"], w.clock()
            )
            assert [bool(r.request_id) for r in results] == [False, False, False]
            assert "may remove files only under /belle/user/bob/" in results[0].error
            assert results[1].error == "not in the catalog"
            assert "malformed LFN" in results[2].error
            assert await w.store.list_failover_requests() == []
            # Production managers may remove anywhere.
            [ok] = await remove_files(w.store, PRODUCTION, [LFN], w.clock())
            assert ok.request_id

    run(body())


def test_a_removal_waits_for_the_replication_made_before_it(tmp_path: Path) -> None:
    """The DDM race: a replication of a file is queued, then the user removes the file. The
    removal runs only after the replication ended, so no copy is left behind."""

    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, FAILOVER_SE)
            await w.store.add_failover_requests(
                [NewFailoverRequest(job_id=0, lfn=LFN, source_se=FAILOVER_SE, target_se=LOCAL_SE)],
                w.clock(),
            )
            [removal] = await remove_files(w.store, ALICE, [LFN], w.clock())
            # One pass: the removal, though due, is not handed out before the replication.
            assert await run_all(w) == (1, 0, 0)
            assert se_path(w, LOCAL_SE).read_bytes() == DATA
            assert await run_all(w) == (1, 0, 0)
            assert not se_path(w, LOCAL_SE).exists()
            assert not se_path(w, FAILOVER_SE).exists()
            assert await w.store.get_files([LFN]) == {}
            [request] = await w.store.list_failover_requests(request_ids=[removal.request_id])
            assert request.status == "Done"

    run(body())


def test_removal_waits_while_an_se_cannot_delete(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, LOCAL_SE)
            root = se_path(w, LOCAL_SE).parents[5]
            root.rename(root.with_name("away"))
            await remove_files(w.store, ALICE, [LFN], w.clock())
            assert await run_all(w) == (0, 1, 0)
            assert (await w.store.get_files([LFN]))[LFN].ses == (LOCAL_SE,)
            root.with_name("away").rename(root)
            w.clock.advance(3600)
            assert await run_all(w) == (1, 0, 0)
            assert await w.store.get_files([LFN]) == {}

    run(body())


def test_interrupted_replication_resumes_without_copying_again(tmp_path: Path) -> None:
    """A crash after the destination copy was written: the retry verifies that copy, keeps it,
    registers it, and only then removes the failover copy."""

    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, FAILOVER_SE)
            target = se_path(w, LOCAL_SE)
            target.parent.mkdir(parents=True)
            target.write_bytes(DATA)
            os.utime(target, (1_000_000, 1_000_000))
            await w.store.add_failover_requests(
                [NewFailoverRequest(job_id=0, lfn=LFN, source_se=FAILOVER_SE, target_se=LOCAL_SE)],
                w.clock(),
            )
            assert await run_all(w) == (1, 0, 0)
            assert target.stat().st_mtime == 1_000_000
            assert (await w.store.get_files([LFN]))[LFN].ses == (LOCAL_SE,)
            assert not se_path(w, FAILOVER_SE).exists()

    run(body())


def test_suspect_copy_is_checked_and_cleared_when_good(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, LOCAL_SE, FAILOVER_SE)
            suspect = SuspectReport(LFN, LOCAL_SE, "adler32 00000000 != catalog adler32 x")
            assert await report_suspects(w.store, [suspect], "job 7", w.clock()) == 1
            # Reported twice: one check.
            assert await report_suspects(w.store, [suspect], "job 8", w.clock()) == 0
            files = await w.store.get_files([LFN])
            assert "reported by job 7" in files[LFN].suspects[LOCAL_SE]
            assert await run_all(w) == (1, 0, 0)
            assert (await w.store.get_files([LFN]))[LFN].suspects == {}
            [check] = await w.store.list_failover_requests(lfn=LFN)
            assert (check.operation, check.status, check.last_error) == (CHECK, "Done", "")

    run(body())


def test_bad_copy_stays_suspect_and_a_missing_one_leaves_the_catalog(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, LOCAL_SE, FAILOVER_SE)
            se_path(w, LOCAL_SE).write_bytes(b"x" * len(DATA))
            se_path(w, FAILOVER_SE).unlink()
            reports = [SuspectReport(LFN, LOCAL_SE, "bad"), SuspectReport(LFN, FAILOVER_SE, "?")]
            assert await report_suspects(w.store, reports, "user alice", w.clock()) == 2
            # Two requests on one LFN: one after the other.
            assert await run_all(w) == (1, 0, 0)
            assert await run_all(w) == (1, 0, 0)
            file = (await w.store.get_files([LFN]))[LFN]
            assert file.ses == (LOCAL_SE,)
            assert file.suspects[LOCAL_SE].startswith("confirmed: adler32 ")
            notes = {r.target_se: r.last_error for r in await w.store.list_failover_requests()}
            assert "is bad" in notes[LOCAL_SE]
            assert "missing: replica removed" in notes[FAILOVER_SE]

    run(body())


def test_suspect_report_of_no_replica_changes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            await stored(w, LOCAL_SE)
            unknown = [
                SuspectReport(LFN, FAILOVER_SE, "x"),
                SuspectReport("/belle/n", LOCAL_SE, ""),
            ]
            assert await report_suspects(w.store, unknown, "job 1", w.clock()) == 0
            assert await w.store.list_failover_requests() == []

    run(body())
