"""The behaviour every storage plugin shares, run against a live SE.

A plugin's test module subclasses `StorageConformance` and provides two fixtures:
`storage` (the plugin bound to a running, writable SE whose namespace this test owns) and
`unreachable_storage` (the same plugin bound to an SE URL where nothing answers). Each test
uses its own LFNs under `lfn_root`, so an SE may be shared by the tests of one session.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes
from wrapper.se import (
    SEFileNotFoundError,
    SENotSupportedError,
    SEUnavailableError,
    SpaceUsage,
    StorageError,
    StoragePlugin,
)

# More than one read/write chunk of every plugin.
LARGE = 3 * 1024 * 1024 + 17


class StorageConformance:
    @pytest.fixture
    def lfn_root(self) -> str:
        return f"/belle/test/{uuid.uuid4().hex[:12]}"

    @staticmethod
    def local_file(directory: Path, data: bytes, name: str = "data.root") -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    def test_round_trip(self, storage: StoragePlugin, lfn_root: str, tmp_path: Path) -> None:
        data = os.urandom(LARGE)
        lfn = f"{lfn_root}/sub00/out_1_1.root"
        storage.upload(self.local_file(tmp_path, data), lfn)
        assert storage.stat(lfn) == len(data)
        assert storage.checksum(lfn) == adler32_of_bytes(data)
        back = tmp_path / "back" / "copy.root"
        storage.download(lfn, back)
        assert back.read_bytes() == data
        # Downloads land under their final name only, with no temporary file left beside.
        assert [p.name for p in back.parent.iterdir()] == ["copy.root"]

    def test_empty_file(self, storage: StoragePlugin, lfn_root: str, tmp_path: Path) -> None:
        lfn = f"{lfn_root}/empty.root"
        storage.upload(self.local_file(tmp_path, b""), lfn)
        assert storage.stat(lfn) == 0
        assert storage.checksum(lfn) == adler32_of_bytes(b"")
        storage.download(lfn, tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == b""

    def test_upload_replaces(self, storage: StoragePlugin, lfn_root: str, tmp_path: Path) -> None:
        lfn = f"{lfn_root}/f.root"
        storage.upload(self.local_file(tmp_path, b"one"), lfn)
        storage.upload(self.local_file(tmp_path, b"two two"), lfn)
        assert storage.stat(lfn) == 7
        assert storage.checksum(lfn) == adler32_of_bytes(b"two two")

    def test_missing_file(self, storage: StoragePlugin, lfn_root: str, tmp_path: Path) -> None:
        lfn = f"{lfn_root}/nothing.root"
        for call in (storage.stat, storage.checksum, storage.delete):
            with pytest.raises(SEFileNotFoundError) as info:
                call(lfn)
            assert lfn in str(info.value)
        with pytest.raises(SEFileNotFoundError):
            storage.download(lfn, tmp_path / "x")
        assert not (tmp_path / "x").exists()

    def test_delete(self, storage: StoragePlugin, lfn_root: str, tmp_path: Path) -> None:
        lfn = f"{lfn_root}/gone.root"
        storage.upload(self.local_file(tmp_path, b"x"), lfn)
        storage.delete(lfn)
        with pytest.raises(SEFileNotFoundError):
            storage.stat(lfn)

    def test_list(self, storage: StoragePlugin, lfn_root: str, tmp_path: Path) -> None:
        local = self.local_file(tmp_path, b"x")
        lfns = [f"{lfn_root}/sub00/b.root", f"{lfn_root}/sub00/a.root", f"{lfn_root}/x/c"]
        for lfn in lfns:
            storage.upload(local, lfn)
        assert storage.list(lfn_root) == sorted(lfns)
        assert storage.list(f"{lfn_root}/sub00") == sorted(lfns[:2])
        assert storage.list(f"{lfn_root}/nobody") == []

    def test_url_for(self, storage: StoragePlugin) -> None:
        assert storage.url_for("/belle/a/b.root") == storage.base_url + "/belle/a/b.root"

    def test_space(self, storage: StoragePlugin) -> None:
        try:
            space = storage.space()
        except SENotSupportedError:
            return
        assert isinstance(space, SpaceUsage)
        assert space.total_bytes > 0
        assert 0 <= space.free_bytes <= space.total_bytes

    def test_unreachable_se_is_unavailable(
        self, unreachable_storage: StoragePlugin, lfn_root: str, tmp_path: Path
    ) -> None:
        lfn = f"{lfn_root}/f.root"
        local = self.local_file(tmp_path, b"x")
        for call in (
            lambda: unreachable_storage.upload(local, lfn),
            lambda: unreachable_storage.download(lfn, tmp_path / "y"),
            lambda: unreachable_storage.stat(lfn),
        ):
            with pytest.raises(SEUnavailableError) as info:
                call()
            assert unreachable_storage.base_url in str(info.value)
        assert not (tmp_path / "y").exists()

    def test_invalid_lfn(self, storage: StoragePlugin, tmp_path: Path) -> None:
        local = self.local_file(tmp_path, b"x")
        with pytest.raises(StorageError, match="invalid LFN"):
            storage.upload(local, "/belle/../../etc/passwd")
