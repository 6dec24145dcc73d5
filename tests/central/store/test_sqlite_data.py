"""SqliteStore storage elements, replica catalog, failover requests and sandbox metadata."""

from __future__ import annotations

import pytest

from central.store.records import (
    FileRecord,
    NewFailoverRequest,
    SandboxRecord,
    StorageElementRecord,
)
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner


def _se(name: str, read: bool = True, write: bool = True, url: str = "") -> StorageElementRecord:
    return StorageElementRecord(
        name=name,
        site="LCG.KEK.jp",
        url=url or f"file:///se/{name}",
        read_allowed=read,
        write_allowed=write,
    )


def test_storage_elements_keep_admin_status_unless_config_changes(
    with_store: StoreRunner,
) -> None:
    async def body(store: SqliteStore) -> None:
        await store.upsert_storage_elements([_se("B-SE"), _se("A-SE", write=False)])
        assert await store.list_storage_elements() == [_se("A-SE", write=False), _se("B-SE")]
        # An admin bans B-SE for reading.
        assert await store.set_storage_element_status("B-SE", read=False, write=True) is True
        assert await store.set_storage_element_status("NOPE", read=False, write=False) is False
        # A restart with the same configuration keeps the ban but refreshes the URL.
        await store.upsert_storage_elements([_se("B-SE", url="file:///new"), _se("A-SE")])
        ses = {s.name: s for s in await store.list_storage_elements()}
        assert (ses["B-SE"].read_allowed, ses["B-SE"].url) == (False, "file:///new")
        # A-SE's write flag changed in the configuration (False -> True): config wins.
        assert ses["A-SE"].write_allowed is True
        # The configuration now disables B-SE reads itself, then enables them again.
        await store.upsert_storage_elements([_se("B-SE", read=False)])
        await store.upsert_storage_elements([_se("B-SE", read=True)])
        ses = {s.name: s for s in await store.list_storage_elements()}
        assert ses["B-SE"].read_allowed is True

    with_store(body)


def _file(lfn: str, *ses: str, size: int = 10, adler32: str = "0000000a") -> FileRecord:
    return FileRecord(lfn=lfn, size=size, adler32=adler32, ses=ses)


def test_add_files_grows_replica_sets_and_refuses_conflicts(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.add_files([_file("/b/f1", "SE-B"), _file("/b/f2", "SE-A")])
        # Same LFN again, checksum in another case: a new replica, not a conflict.
        await store.add_files([_file("/b/f1", "SE-A", "SE-B", adler32="0000000A")])
        files = await store.get_files(["/b/f1", "/b/f2", "/b/unknown"])
        assert files == {"/b/f1": _file("/b/f1", "SE-A", "SE-B"), "/b/f2": _file("/b/f2", "SE-A")}
        # A conflict anywhere in the batch adds nothing at all.
        with pytest.raises(ValueError, match="size 10"):
            await store.add_files([_file("/b/f3", "SE-C"), _file("/b/f2", "SE-C", size=11)])
        with pytest.raises(ValueError, match="adler32"):
            await store.add_files([_file("/b/f2", "SE-C", adler32="deadbeef")])
        assert await store.get_files(["/b/f3"]) == {}
        assert (await store.get_files(["/b/f2"]))["/b/f2"].ses == ("SE-A",)
        assert await store.get_files([]) == {}

    with_store(body)


def test_list_files_is_a_directory_prefix_match(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        lfns = ["/a/b/x", "/a/b/sub/y", "/a/bc/z", "/a/b", "/a/b0", "/a/b./w", "/c/d"]
        await store.add_files([_file(lfn, "SE-A") for lfn in lfns])

        async def listed(lpn: str) -> list[str]:
            return [f.lfn for f in await store.list_files(lpn)]

        assert await listed("/a/b") == ["/a/b/sub/y", "/a/b/x"]
        assert await listed("/a/b/") == ["/a/b/sub/y", "/a/b/x"]
        assert await listed("/a") == ["/a/b", "/a/b./w", "/a/b/sub/y", "/a/b/x", "/a/b0", "/a/bc/z"]
        assert await listed("/") == sorted(lfns)
        assert await listed("/nothing") == []

    with_store(body)


def test_remove_replica_keeps_the_file_entry(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.add_files([_file("/f", "SE-A", "FAIL-SE")])
        await store.remove_replica("/f", "FAIL-SE")
        await store.remove_replica("/f", "NOT-THERE")
        await store.remove_replica("/unknown", "SE-A")
        assert (await store.get_files(["/f"]))["/f"].ses == ("SE-A",)
        await store.remove_replica("/f", "SE-A")
        assert (await store.get_files(["/f"]))["/f"] == _file("/f")

    with_store(body)


def test_failover_requests_life_cycle(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        def req(job_id: int, lfn: str) -> NewFailoverRequest:
            return NewFailoverRequest(job_id=job_id, lfn=lfn, source_se="F", target_se="T")

        first = await store.add_failover_requests([req(1, "/x1"), req(1, "/x2")], now=10.0)
        second = await store.add_failover_requests([req(2, "/y")], now=20.0)
        assert len({*first, *second}) == 3
        assert await store.add_failover_requests([], now=1.0) == []
        assert [r.request_id for r in await store.due_failover_requests(5.0, 10)] == []
        assert [r.request_id for r in await store.due_failover_requests(15.0, 10)] == first
        due = await store.due_failover_requests(25.0, 10)
        assert [r.request_id for r in due] == [*first, *second]
        assert [r.request_id for r in await store.due_failover_requests(25.0, 1)] == first[:1]
        # A failed try: back off until 100.
        await store.update_failover_request(
            first[0], status="Waiting", attempts=1, last_error="timeout", next_try=100.0, now=30.0
        )
        assert [r.request_id for r in await store.due_failover_requests(50.0, 10)] == [
            first[1],
            *second,
        ]
        await store.update_failover_request(
            first[1], status="Done", attempts=1, last_error="", next_try=0.0, now=31.0
        )
        (r1, r2) = await store.list_failover_requests(job_id=1)
        assert (r1.status, r1.attempts, r1.last_error, r1.created, r1.updated, r1.next_try) == (
            "Waiting",
            1,
            "timeout",
            10.0,
            30.0,
            100.0,
        )
        assert (r1.job_id, r1.lfn, r1.source_se, r1.target_se) == (1, "/x1", "F", "T")
        assert r2.status == "Done"
        assert [r.request_id for r in await store.list_failover_requests(status="Done")] == [
            first[1]
        ]
        assert len(await store.list_failover_requests()) == 3
        assert await store.list_failover_requests(job_id=2, status="Done") == []
        with pytest.raises(ValueError, match="unknown failover request status"):
            await store.update_failover_request(
                first[0], status="Bogus", attempts=1, last_error="", next_try=0.0, now=1.0
            )
        with pytest.raises(KeyError, match="unknown failover request 999"):
            await store.update_failover_request(
                999, status="Done", attempts=1, last_error="", next_try=0.0, now=1.0
            )

    with_store(body)


def test_sandbox_metadata_is_idempotent(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        rec = SandboxRecord(
            sandbox_id="ab" * 32,
            size=42,
            kind="input",
            owner="alice",
            job_id=0,
            attempt=0,
            created=5.0,
        )
        await store.add_sandbox(rec)
        await store.add_sandbox(
            SandboxRecord(
                sandbox_id="ab" * 32,
                size=42,
                kind="input",
                owner="bob",
                job_id=0,
                attempt=0,
                created=9.0,
            )
        )
        assert await store.get_sandbox("ab" * 32) == rec
        assert await store.get_sandbox("cd" * 32) is None

    with_store(body)
