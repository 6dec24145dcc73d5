"""`verify_bundle`: check a bundle tarball the way a worker node will, before shipping it.

One streaming pass over the archive (no unpacking) checks that it holds only plain relative
files and directories, the layout (launcher, app packages, one lib/cpXY per Python named in
bundle.json) and every MANIFEST.sha256 line against the file's content, naming each file
that is missing, unlisted or different. The gzip stream must end where the archive ends (a
node's `tar` rejects trailing bytes), and the file's own checksum must match the one given
or the `<bundle>.sha256` beside it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpilot.bundle.layout import APP_DIR, INFO_FILE, LAUNCHER, LIB_DIR, MANIFEST, BundleError
from gridpilot.bundle.manifest import (
    check_member_name,
    parse_manifest,
    sha256_of_path,
    sha256_of_stream,
)

# Problems named in one error message; the rest are counted.
_SHOWN_PROBLEMS = 5
_CHUNK = 1 << 20
_REQUIRED_FILES = (
    LAUNCHER,
    INFO_FILE,
    f"{APP_DIR}/pilot/__main__.py",
    f"{APP_DIR}/wrapper/__init__.py",
)
# Read whole rather than hashed: small, and needed for their content.
_READ_FILES = (MANIFEST, INFO_FILE)


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    sha256: str
    size: int
    gridpilot_version: str
    python_tags: tuple[str, ...]
    built: str
    files: int
    # python tag -> distribution -> version
    requirements: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "gridpilot_version": self.gridpilot_version,
            "python_tags": list(self.python_tags),
            "built": self.built,
            "files": self.files,
            "requirements": self.requirements,
        }


@dataclass
class _Contents:
    # regular file -> (sha256, mode)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    read: dict[str, bytes] = field(default_factory=dict)


def _scan(path: Path) -> _Contents:
    contents = _Contents()
    try:
        with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    _add(contents, tar, member, path)
            # tarfile stops at the end-of-archive blocks; what follows must be nothing.
            while gz.read(_CHUNK):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BundleError(f"{path} is not a complete, readable .tar.gz: {exc}") from exc
    return contents


def _add(contents: _Contents, tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    name = member.name.removeprefix("./").rstrip("/")
    check_member_name(name)
    if name in contents.files or name in contents.dirs:
        raise BundleError(f"{path} holds {name} twice")
    if member.isdir():
        contents.dirs.add(name)
        return
    stream = tar.extractfile(member) if member.isfile() else None
    if stream is None:
        raise BundleError(f"{path}: entry {name} is not a regular file or directory")
    if name in _READ_FILES:
        data = stream.read()
        contents.read[name] = data
        digest = hashlib.sha256(data).hexdigest()
    else:
        digest = sha256_of_stream(stream)
    contents.files[name] = (digest, member.mode)


def _manifest_problems(contents: _Contents) -> list[str]:
    manifest = parse_manifest(contents.read[MANIFEST].decode("utf-8"))
    problems: list[str] = []
    for name, (actual, _mode) in sorted(contents.files.items()):
        if name == MANIFEST:
            continue
        expected = manifest.get(name)
        if expected is None:
            problems.append(f"{name} is not listed")
        elif actual != expected:
            problems.append(f"{name} has sha256 {actual}, the manifest says {expected}")
    missing = sorted(set(manifest) - set(contents.files))
    return problems + [f"{name} is listed but missing" for name in missing]


def _info(path: Path, data: bytes) -> dict[str, Any]:
    try:
        info = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{path}: {INFO_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise BundleError(f"{path}: {INFO_FILE} is not a JSON object")
    return info


def _requirements(info: dict[str, Any], tags: tuple[str, ...]) -> dict[str, dict[str, str]]:
    pythons = info.get("pythons")
    found: dict[str, dict[str, str]] = {}
    for tag in tags:
        entry = pythons.get(tag) if isinstance(pythons, dict) else None
        versions = entry.get("requirements") if isinstance(entry, dict) else None
        if isinstance(versions, dict):
            found[tag] = {str(k): str(v) for k, v in versions.items()}
    return found


def _expected_sha256(path: Path, expected: str | None) -> tuple[str, str] | None:
    """(checksum, where it comes from): the caller's, else the .sha256 file beside the bundle."""
    if expected:
        return expected.strip().lower(), "expected"
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return None
    words = sidecar.read_text(encoding="utf-8").split()
    return (words[0].lower() if words else ""), f"{sidecar.name} says"


def verify_bundle(path: Path, expected_sha256: str | None = None) -> BundleInfo:
    """Check the bundle at `path`; raises BundleError naming what is wrong."""
    try:
        digest = sha256_of_path(path)
        size = path.stat().st_size
        expected = _expected_sha256(path, expected_sha256)
    except OSError as exc:
        raise BundleError(f"cannot read pilot bundle {path}: {exc}") from exc
    if expected is not None and expected[0] != digest:
        raise BundleError(
            f"{path} checksum mismatch: {expected[1]} {expected[0] or 'nothing'}, "
            f"the file's is {digest}"
        )
    contents = _scan(path)
    missing = [name for name in (MANIFEST, *_REQUIRED_FILES) if name not in contents.files]
    if missing:
        raise BundleError(f"{path} is not a pilot bundle: it has no {', '.join(missing)}")
    if not contents.files[LAUNCHER][1] & 0o100:
        raise BundleError(f"{path}: {LAUNCHER} is not executable")
    problems = _manifest_problems(contents)
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        extra = f" (and {more} more)" if more > 0 else ""
        raise BundleError(f"{path} does not match its own {MANIFEST}: {shown}{extra}")
    info = _info(path, contents.read[INFO_FILE])
    tags = tuple(str(t) for t in info.get("python_tags") or [])
    if not tags:
        raise BundleError(f"{path}: {INFO_FILE} names no Python version")
    absent = [
        tag
        for tag in tags
        if f"{LIB_DIR}/{tag}" not in contents.dirs
        and not any(name.startswith(f"{LIB_DIR}/{tag}/") for name in contents.files)
    ]
    if absent:
        raise BundleError(f"{path}: {INFO_FILE} names {', '.join(absent)}, which has no {LIB_DIR}/")
    return BundleInfo(
        path=path.resolve(),
        sha256=digest,
        size=size,
        gridpilot_version=str(info.get("gridpilot_version", "")),
        python_tags=tags,
        built=str(info.get("built", "")),
        files=len(contents.files),
        requirements=_requirements(info, tags),
    )
