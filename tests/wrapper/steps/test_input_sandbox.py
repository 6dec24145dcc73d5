from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from gridpilot.archives import UnsafeArchiveError, check_member, safe_extract


def make_tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_extracts_files_and_dirs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "steering.py").write_text("print('hi')\n")
    (src / "sub" / "extra.dat").write_bytes(b"\x00\x01")
    archive = tmp_path / "sb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "steering.py", arcname="steering.py")
        tar.add(src / "sub", arcname="sub")
    dest = tmp_path / "work"
    dest.mkdir()
    assert safe_extract(archive, dest) == ["steering.py", "sub/extra.dat"]
    assert (dest / "steering.py").read_text() == "print('hi')\n"
    assert (dest / "sub" / "extra.dat").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize(
    ("name", "match"),
    [("/etc/evil", "absolute"), ("../evil", "leaves"), ("a/../../evil", "leaves")],
)
def test_path_traversal_refused(tmp_path: Path, name: str, match: str) -> None:
    archive = make_tar(tmp_path / "bad.tar.gz", [file_member("ok.txt"), file_member(name)])
    dest = tmp_path / "work"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, dest)
    # Nothing at all is written when one member is bad.
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_and_devices_refused(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("link")
    info.type = kind
    info.linkname = "/etc/passwd"
    with pytest.raises(UnsafeArchiveError, match="only regular files"):
        check_member(info, tmp_path)


def test_symlinked_directory_in_dest_cannot_be_escaped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(UnsafeArchiveError, match="leaves"):
        check_member(file_member("sub/file"), dest)


def test_not_a_tar(tmp_path: Path) -> None:
    archive = tmp_path / "junk.tar.gz"
    archive.write_bytes(b"this is not a tarball")
    with pytest.raises(UnsafeArchiveError, match="not a readable tar"):
        safe_extract(archive, tmp_path)


def test_size_cap(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tar.gz", [file_member("a")], data=b"y" * 1000)
    dest = tmp_path / "work"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="more than"):
        safe_extract(archive, dest, max_bytes=999)
