"""A reproducible .tar.gz of a directory tree: the same files give the same bytes.

Entries are sorted, owned by 0:0 with no user names, stamped with one given time, and
have modes normalised to 0755 (directories, executables) or 0644; the gzip header carries
no name and no time. Worker nodes cache unpacked bundles by the tarball's checksum, so a
rebuild from unchanged inputs reuses every node's cache.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

from gridpilot.bundle.layout import BundleError
from gridpilot.bundle.manifest import check_member_name

_COMPRESS_LEVEL = 6


def _entries(root: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in (*dirnames, *filenames):
            path = base / name
            relative = path.relative_to(root).as_posix()
            check_member_name(relative)
            found.append((relative, path))
    return sorted(found)


def _info(relative: str, path: Path, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(relative)
    stat = path.lstat()
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_symlink():
        raise BundleError(f"{path} is a symbolic link; bundles hold none")
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif path.is_file():
        info.type = tarfile.REGTYPE
        info.size = stat.st_size
        info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
    else:
        raise BundleError(f"{path} is neither a regular file nor a directory")
    return info


def write_tar_gz(root: Path, out: BinaryIO, mtime: int) -> None:
    """Write the tree under `root` (root itself excluded: paths are relative) to `out`."""
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=out, mtime=0, compresslevel=_COMPRESS_LEVEL
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for relative, path in _entries(root):
            info = _info(relative, path, mtime)
            if info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
