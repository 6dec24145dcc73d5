"""Input sandboxes are deterministic tarballs; output sandboxes are unpacked without escaping."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from gridpilot.cli.common import CliError
from gridpilot.cli.sandbox import build_input_sandbox, extract_safely


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return sorted(tar.getnames())


def test_input_sandbox_holds_steering_and_extras(tmp_path: Path) -> None:
    steering = tmp_path / "steer.py"
    steering.write_text("import basf2\n")
    extra = tmp_path / "cuts.txt"
    extra.write_text("mbc > 5.27\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.json").write_text("{}")
    data = build_input_sandbox(steering, [extra, conf])
    assert _names(data) == ["conf", "conf/a.json", "cuts.txt", "steer.py"]
    out = tmp_path / "out"
    archive = tmp_path / "in.tar.gz"
    archive.write_bytes(data)
    extract_safely(archive, out)
    assert (out / "steer.py").read_text() == "import basf2\n"
    assert (out / "conf" / "a.json").read_text() == "{}"


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    steering = tmp_path / "steer.py"
    steering.write_text("x = 1\n")
    first = build_input_sandbox(steering, [])
    os.utime(steering, (1_000_000, 1_000_000))
    assert build_input_sandbox(steering, []) == first


def test_clashing_names_are_refused(tmp_path: Path) -> None:
    steering = tmp_path / "steer.py"
    steering.write_text("")
    (tmp_path / "sub").mkdir()
    other = tmp_path / "sub" / "steer.py"
    other.write_text("")
    with pytest.raises(CliError, match=r"share the name 'steer\.py'"):
        build_input_sandbox(steering, [other])


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, payload: bytes = b"") -> Path:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return archive


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt"])
def test_extract_refuses_paths_outside(tmp_path: Path, name: str) -> None:
    archive = _tar_with(tmp_path, tarfile.TarInfo(name), b"boom")
    dest = tmp_path / "dest"
    with pytest.raises(CliError, match="refusing unsafe sandbox"):
        extract_safely(archive, dest)
    assert not (tmp_path / "escape.txt").exists()


def test_extract_refuses_absolute_names(tmp_path: Path) -> None:
    target = tmp_path / "absolute.txt"
    archive = _tar_with(tmp_path, tarfile.TarInfo(str(target)), b"boom")
    with pytest.raises(CliError, match="absolute path"):
        extract_safely(archive, tmp_path / "dest")
    assert not target.exists()


def test_extract_refuses_links_out(tmp_path: Path) -> None:
    link = tarfile.TarInfo("log")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path, link)
    with pytest.raises(CliError, match="refusing unsafe sandbox"):
        extract_safely(archive, tmp_path / "dest")


def test_extract_reports_garbage(tmp_path: Path) -> None:
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"not a tarball")
    with pytest.raises(CliError, match="not a readable tarball"):
        extract_safely(archive, tmp_path / "dest")
