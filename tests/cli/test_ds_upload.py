"""gb2_ds_put's engine against real file:// SEs: the LFN plan, verification before
registration, and no copy left behind when verification or registration fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes
from gridpilot.cli.ds_upload import (
    CatalogEntry,
    FileToPut,
    PutOutcome,
    RegistrationError,
    plan_files,
    put_all,
)
from wrapper.se import StoragePlugin, open_storage
from wrapper.se.file import FilePlugin

LPN = "/belle/user/alice/up"
SE = "TEST-SE"


class _Registry:
    """Stands in for central's RegisterReplicas."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.registered: list[tuple[str, int, str]] = []

    def __call__(self, lfn: str, size: int, adler32: str) -> None:
        if self.refuse:
            raise RegistrationError(self.refuse)
        self.registered.append((lfn, size, adler32))


class _CorruptingPlugin(FilePlugin):
    """An SE that stores one byte more than it was given."""

    def upload(self, local: Path, lfn: str) -> None:
        super().upload(local, lfn)
        with self._path(lfn).open("ab") as f:
            f.write(b"!")


def _files(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_plan_maps_files_and_directories(tmp_path: Path) -> None:
    src = _files(tmp_path / "src", {"a": b"1", "d/b": b"2", "d/.gridpilot-x.part": b"tmp"})
    single = _files(tmp_path / "other", {"c": b"3"}) / "c"
    plan = plan_files([src, single], LPN + "/")
    assert [(p.lfn, p.local) for p in plan] == [
        (f"{LPN}/a", src / "a"),
        (f"{LPN}/c", single),
        (f"{LPN}/d/b", src / "d" / "b"),
    ]
    # The same file named twice is one upload; two files for one LFN are refused.
    assert len(plan_files([src / "a", src / "a"], LPN)) == 1
    clash = _files(tmp_path / "clash", {"a": b"other"})
    with pytest.raises(ValueError, match="would both be uploaded as"):
        plan_files([src, clash], LPN)
    with pytest.raises(ValueError, match="does not exist"):
        plan_files([tmp_path / "missing"], LPN)


def test_uploads_verifies_registers_then_skips(tmp_path: Path) -> None:
    se_root = tmp_path / "se"
    se_root.mkdir()
    src = _files(tmp_path / "src", {"a": b"a" * 100, "b": b"b" * 7})
    items = plan_files([src], LPN)
    registry = _Registry()
    done: list[str] = []
    results = put_all(
        items,
        SE,
        f"file://{se_root}",
        {},
        registry,
        workers=2,
        on_done=lambda r: done.append(r.lfn),
    )
    assert [r.outcome for r in results] == [PutOutcome.UPLOADED, PutOutcome.UPLOADED]
    assert sorted(done) == [f"{LPN}/a", f"{LPN}/b"]
    assert sorted(registry.registered) == [
        (f"{LPN}/a", 100, adler32_of_bytes(b"a" * 100)),
        (f"{LPN}/b", 7, adler32_of_bytes(b"b" * 7)),
    ]
    catalog = {
        lfn: CatalogEntry(size, adler, frozenset({SE})) for lfn, size, adler in registry.registered
    }
    again = put_all(items, SE, f"file://{se_root}", catalog, _Registry("must not be called"))
    assert [r.outcome for r in again] == [PutOutcome.SKIPPED, PutOutcome.SKIPPED]

    # Registered with the same contents elsewhere only: a copy is added on this SE.
    elsewhere = {
        lfn: CatalogEntry(e.size, e.adler32, frozenset({"OTHER"})) for lfn, e in catalog.items()
    }
    added = put_all(items, SE, f"file://{se_root}", elsewhere, _Registry())
    assert [r.outcome for r in added] == [PutOutcome.UPLOADED, PutOutcome.UPLOADED]


def test_copy_that_does_not_verify_is_deleted_not_registered(tmp_path: Path) -> None:
    se_root = tmp_path / "se"
    se_root.mkdir()
    src = _files(tmp_path / "src", {"a": b"payload"})
    registry = _Registry()
    [result] = put_all(
        plan_files([src], LPN),
        SE,
        f"file://{se_root}",
        {},
        registry,
        opener=_CorruptingPlugin,
    )
    assert result.outcome is PutOutcome.FAILED
    assert "does not verify: size 8 != local size 7" in result.errors[0]
    assert registry.registered == []
    assert not (se_root / LPN.lstrip("/") / "a").exists()


def test_refused_registration_deletes_the_copy(tmp_path: Path) -> None:
    se_root = tmp_path / "se"
    se_root.mkdir()
    src = _files(tmp_path / "src", {"a": b"payload"})
    [result] = put_all(
        plan_files([src], LPN), SE, f"file://{se_root}", {}, _Registry("already registered")
    )
    assert result.outcome is PutOutcome.FAILED
    assert result.errors == ["not registered: already registered"]
    assert not (se_root / LPN.lstrip("/") / "a").exists()


def test_other_contents_in_the_catalog_are_never_overwritten(tmp_path: Path) -> None:
    se_root = tmp_path / "se"
    storage: StoragePlugin = open_storage(f"file://{se_root}")
    theirs = _files(tmp_path / "theirs", {"a": b"registered"}) / "a"
    se_root.mkdir()
    storage.upload(theirs, f"{LPN}/a")
    src = _files(tmp_path / "src", {"a": b"different!"})
    catalog = {f"{LPN}/a": CatalogEntry(10, adler32_of_bytes(b"registered"), frozenset({SE}))}
    [result] = put_all(
        [FileToPut(src / "a", f"{LPN}/a")], SE, f"file://{se_root}", catalog, _Registry()
    )
    assert result.outcome is PutOutcome.FAILED
    assert "already registered with other contents" in result.errors[0]
    assert (se_root / LPN.lstrip("/") / "a").read_bytes() == b"registered"
