from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes
from tests.wrapper.se.conformance import StorageConformance
from wrapper.se import (
    SEFileNotFoundError,
    SEUnavailableError,
    StorageError,
    open_storage,
)
from wrapper.se.file import FilePlugin

LFN = "/belle/user/alice/p1/sub00/out_1_1.root"


def refuse_writes(root: Path) -> None:
    """Make the SE unusable the way the tests and the demo do: its root becomes a file."""
    root.rename(root.with_name(root.name + ".away"))
    root.write_text("not a directory\n")


@pytest.fixture
def se_root(tmp_path: Path) -> Path:
    root = tmp_path / "se"
    root.mkdir()
    return root


@pytest.fixture
def se(se_root: Path) -> FilePlugin:
    storage = open_storage(f"file://{se_root}")
    assert isinstance(storage, FilePlugin)
    return storage


def test_open_storage_picks_file_plugin(se_root: Path) -> None:
    storage = open_storage(f"file://{se_root}/")
    assert isinstance(storage, FilePlugin)
    assert storage.url_for(LFN) == f"file://{se_root}{LFN}"


def test_relative_path_refused() -> None:
    with pytest.raises(StorageError, match="absolute path"):
        FilePlugin("file://relative/dir")


def test_upload_creates_dirs_and_round_trips(se: FilePlugin, se_root: Path, tmp_path: Path) -> None:
    data = b"event data " * 1000
    local = tmp_path / "out.root"
    local.write_bytes(data)
    se.upload(local, LFN)
    stored = se_root / LFN.lstrip("/")
    assert stored.read_bytes() == data
    assert se.stat(LFN) == len(data)
    assert se.checksum(LFN) == adler32_of_bytes(data)
    # No temporary file is left next to the real one.
    assert [p.name for p in stored.parent.iterdir()] == ["out_1_1.root"]
    back = tmp_path / "back" / "copy.root"
    se.download(LFN, back)
    assert back.read_bytes() == data
    assert [p.name for p in back.parent.iterdir()] == ["copy.root"]


def test_upload_replaces_existing(se: FilePlugin, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"one")
    se.upload(local, LFN)
    local.write_bytes(b"two two")
    se.upload(local, LFN)
    assert se.stat(LFN) == 7


def test_missing_file_errors(se: FilePlugin, tmp_path: Path) -> None:
    with pytest.raises(SEFileNotFoundError, match="not found"):
        se.stat(LFN)
    with pytest.raises(SEFileNotFoundError):
        se.checksum(LFN)
    with pytest.raises(SEFileNotFoundError):
        se.delete(LFN)
    with pytest.raises(SEFileNotFoundError):
        se.download(LFN, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_delete(se: FilePlugin, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    se.upload(local, LFN)
    se.delete(LFN)
    with pytest.raises(SEFileNotFoundError):
        se.stat(LFN)


def test_list_is_recursive_sorted_and_skips_partial_files(
    se: FilePlugin, se_root: Path, tmp_path: Path
) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    lfns = ["/belle/user/a/p/sub00/b.root", "/belle/user/a/p/sub00/a.root", "/belle/user/a/p/x/c"]
    for lfn in lfns:
        se.upload(local, lfn)
    (se_root / "belle/user/a/p/sub00/.gridpilot-abc.part").write_bytes(b"half")
    assert se.list("/belle/user/a/p") == sorted(lfns)
    assert se.list("/belle/user/a/p/sub00") == sorted(lfns[:2])
    assert se.list("/belle/user/nobody") == []


def test_invalid_lfn_refused(se: FilePlugin, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    with pytest.raises(StorageError, match="invalid LFN"):
        se.upload(local, "/belle/../../etc/passwd")
    with pytest.raises(StorageError, match="invalid LFN"):
        se.stat("/")


def test_refused_writes_when_root_replaced_by_file(
    se: FilePlugin, se_root: Path, tmp_path: Path
) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"payload")
    refuse_writes(se_root)
    with pytest.raises(SEUnavailableError) as info:
        se.upload(local, LFN)
    assert f"file://{se_root}" in str(info.value)
    assert LFN in str(info.value)
    for call in (se.stat, se.checksum, se.delete, se.list):
        with pytest.raises(SEUnavailableError):
            call(LFN)
    with pytest.raises(SEUnavailableError):
        se.download(LFN, tmp_path / "y")


def test_missing_root_is_unavailable_not_missing_file(tmp_path: Path) -> None:
    se = FilePlugin(f"file://{tmp_path}/no-such-se")
    with pytest.raises(SEUnavailableError, match="unavailable"):
        se.stat(LFN)
    local = tmp_path / "f"
    local.write_bytes(b"x")
    with pytest.raises(SEUnavailableError):
        se.upload(local, LFN)
    assert not (tmp_path / "no-such-se").exists()


def test_path_component_is_a_file(se: FilePlugin, se_root: Path, tmp_path: Path) -> None:
    (se_root / "belle").write_text("in the way")
    local = tmp_path / "f"
    local.write_bytes(b"x")
    with pytest.raises(SEUnavailableError, match="refused"):
        se.upload(local, LFN)


def test_missing_local_file_on_upload(se: FilePlugin, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        se.upload(tmp_path / "absent", LFN)


class TestFileConformance(StorageConformance):
    @pytest.fixture
    def storage(self, se: FilePlugin) -> FilePlugin:
        return se

    @pytest.fixture
    def unreachable_storage(self, tmp_path: Path) -> FilePlugin:
        return FilePlugin(f"file://{tmp_path}/no-such-se")
