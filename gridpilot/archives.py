"""Unpacking tarballs that come from someone else (sandboxes): nothing may land outside the
destination. Used by the wrapper (input sandboxes) and the CLI (output sandboxes).

Every member is checked before anything is written: absolute names, `..`, links and special
files make the whole archive refused. Python's own `data` extraction filter is applied on
top where the interpreter has it (CPython >= 3.11.4; worker nodes may run Debian 12's 3.11.2,
where the checks here are the whole defence).
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

# A 10 MB compressed sandbox should never unpack to more than this.
MAX_UNPACKED_BYTES = 2 * 1024**3


class UnsafeArchiveError(ValueError):
    """The archive holds a member that must not be extracted, or is not a tarball."""


class NotAnArchiveError(UnsafeArchiveError):
    """The file is not a readable tar archive at all."""


def check_member(member: tarfile.TarInfo, dest: Path) -> PurePosixPath:
    """The member's relative path when it is safe to extract under `dest`; else raise."""
    name = PurePosixPath(member.name)
    if name.is_absolute():
        raise UnsafeArchiveError(f"absolute path in sandbox: {member.name!r}")
    if ".." in name.parts:
        raise UnsafeArchiveError(f"path leaves the work directory: {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"only regular files and directories are allowed in a sandbox: {member.name!r}"
        )
    root = dest.resolve()
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise UnsafeArchiveError(f"path leaves the work directory: {member.name!r}")
    return name


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> list[str]:
    """Extract every member of the tar(.gz) into `dest`; the relative names of its files."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            names = [check_member(m, dest) for m in members]
            total = sum(m.size for m in members if m.isfile())
            if total > max_bytes:
                raise UnsafeArchiveError(
                    f"sandbox unpacks to {total} bytes, more than the {max_bytes} allowed"
                )
            if hasattr(tarfile, "data_filter"):
                # A second line of defence (modes, owners, special bits).
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError) as exc:
        raise NotAnArchiveError(f"not a readable tar archive: {exc}") from exc
    return sorted(str(n) for n, m in zip(names, members, strict=True) if m.isfile())
