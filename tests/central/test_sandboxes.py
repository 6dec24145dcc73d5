"""The content-addressed sandbox byte store, on a real directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from central.sandboxes import (
    InvalidSandboxIdError,
    SandboxNotFoundError,
    SandboxStore,
    SandboxTooLargeError,
    UploadStateError,
)


async def _upload(store: SandboxStore, data: bytes, chunk: int = 1000) -> tuple[str, int]:
    upload = store.begin_upload()
    async with upload:
        for i in range(0, len(data), chunk):
            await upload.write(data[i : i + chunk])
        return await upload.finish()


async def _read(store: SandboxStore, sandbox_id: str, chunk_size: int) -> list[bytes]:
    return [c async for c in store.iter_chunks(sandbox_id, chunk_size=chunk_size)]


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _partials(store: SandboxStore) -> list[Path]:
    return list(store.tmp.iterdir())


def test_upload_stores_content_under_its_sha256(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path / "sandboxes", max_bytes=1_000_000)
    data = os.urandom(5_500)
    sandbox_id, size = asyncio.run(_upload(store, data))
    assert sandbox_id == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    path = tmp_path / "sandboxes" / sandbox_id[:2] / sandbox_id
    assert path.read_bytes() == data
    assert store.open_read(sandbox_id) == path
    assert _partials(store) == []


def test_same_content_twice_is_idempotent(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=10_000)
    data = b"steering file contents" * 10

    async def main() -> list[tuple[str, int]]:
        return list(await asyncio.gather(*(_upload(store, data, chunk=7) for _ in range(4))))

    results = asyncio.run(main())
    assert len(set(results)) == 1
    sandbox_id, _ = results[0]
    assert store.path_of(sandbox_id).read_bytes() == data
    assert _partials(store) == []
    assert [p.name for p in (tmp_path / sandbox_id[:2]).iterdir()] == [sandbox_id]


def test_too_large_upload_fails_early_and_leaves_nothing(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=10_000_000)

    async def main() -> None:
        upload = store.begin_upload()
        chunk = b"x" * 1_000_000
        for _ in range(10):
            await upload.write(chunk)
        assert upload.size == 10_000_000
        # The limit is enforced as soon as the running size passes it, not at the end.
        with pytest.raises(SandboxTooLargeError) as err:
            await upload.write(chunk)
        assert not upload.partial.exists()
        assert err.value.size == 11_000_000
        assert err.value.limit == 10_000_000
        assert str(err.value) == "sandbox of 11 MB exceeds the 10 MB limit"
        with pytest.raises(UploadStateError):
            await upload.write(b"more")
        with pytest.raises(UploadStateError):
            await upload.finish()

    asyncio.run(main())
    assert _partials(store) == []
    assert [p for p in tmp_path.iterdir() if p.name != "tmp"] == []


def test_too_large_messages_name_size_and_limit() -> None:
    assert str(SandboxTooLargeError(12_345_678, 10_000_000)) == (
        "sandbox of 12.3 MB exceeds the 10 MB limit"
    )
    assert str(SandboxTooLargeError(2_500, 1_000)) == "sandbox of 2.5 kB exceeds the 1 kB limit"
    assert str(SandboxTooLargeError(10_000_001, 10_000_000)) == (
        "sandbox of 10000001 bytes exceeds the 10000000 bytes limit"
    )


def test_check_size_refuses_a_declared_size(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=100)
    store.check_size(100)
    with pytest.raises(SandboxTooLargeError, match="exceeds the 100 bytes limit"):
        store.check_size(101)


def test_abort_and_failed_context_remove_the_partial(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=1000)

    async def main() -> None:
        upload = store.begin_upload()
        await upload.write(b"abc")
        assert upload.partial.exists()
        await upload.abort()
        await upload.abort()
        assert not upload.partial.exists()

        failing = store.begin_upload()

        async def client_goes_away() -> None:
            async with failing:
                await failing.write(b"abc")
                raise ConnectionError("client went away")

        with pytest.raises(ConnectionError):
            await client_goes_away()
        assert not failing.partial.exists()

        # Leaving the block without finish() also discards the upload.
        async with store.begin_upload() as unfinished:
            await unfinished.write(b"abc")
        assert not unfinished.partial.exists()

    asyncio.run(main())
    assert _partials(store) == []
    assert store.open_read(hashlib.sha256(b"abc").hexdigest()) is None


def test_partial_file_never_appears_under_an_id(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=1000)

    async def main() -> str:
        upload = store.begin_upload()
        await upload.write(b"half")
        assert _names(tmp_path) == ["tmp"]
        await upload.write(b" and the rest")
        sandbox_id, _ = await upload.finish()
        return sandbox_id

    sandbox_id = asyncio.run(main())
    assert store.path_of(sandbox_id).read_bytes() == b"half and the rest"


def test_iter_chunks_streams_the_bytes(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=1_000_000)
    data = os.urandom(600_000)
    sandbox_id, _ = asyncio.run(_upload(store, data, chunk=65_536))
    chunks = asyncio.run(_read(store, sandbox_id, 256 * 1024))
    assert [len(c) for c in chunks] == [262_144, 262_144, 75_712]
    assert b"".join(chunks) == data
    assert b"".join(asyncio.run(_read(store, sandbox_id, 1000))) == data


def test_unknown_and_invalid_ids(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=1000)
    unknown = "0" * 64
    assert store.open_read(unknown) is None
    with pytest.raises(SandboxNotFoundError, match=unknown):
        asyncio.run(_read(store, unknown, 10))
    for bad in ("../../etc/passwd", "AB" * 32, "ab" * 31, "", "ab" * 32 + "/x"):
        with pytest.raises(InvalidSandboxIdError, match="invalid sandbox id"):
            store.open_read(bad)


def test_empty_sandbox_is_allowed(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=10)
    sandbox_id, size = asyncio.run(_upload(store, b""))
    assert (sandbox_id, size) == (hashlib.sha256(b"").hexdigest(), 0)
    assert store.path_of(sandbox_id).read_bytes() == b""


def test_stale_partials_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path, max_bytes=1000)
    stale = store.tmp / "upload-old.part"
    fresh = store.tmp / "upload-new.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    assert store.remove_stale_partials() == 1
    assert not stale.exists()
    assert fresh.exists()


def test_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        SandboxStore(tmp_path, max_bytes=0)
