"""MANIFEST.sha256: one `sha256sum` line per regular file of the bundle.

The start script checks it with `sha256sum --quiet --strict -c MANIFEST.sha256` from the
bundle root, so the format is exactly what coreutils writes: 64 lowercase hex digits, two
spaces, the path relative to the root. Paths that sha256sum would have to escape (a
backslash or a newline) are refused rather than escaped: nothing in a bundle needs them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from gridpilot.bundle.layout import MANIFEST, BundleError

_CHUNK = 1 << 20
_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


def sha256_of_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of_path(path: Path) -> str:
    with path.open("rb") as fh:
        return sha256_of_stream(fh)


def check_member_name(name: str) -> None:
    """Refuse paths that sha256sum would escape or that would leave the bundle root."""
    if "\\" in name or "\n" in name or "\r" in name:
        raise BundleError(f"bundle path {name!r} contains a backslash or a line break")
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise BundleError(f"bundle path {name!r} is not a plain relative path")


def tree_files(root: Path) -> Iterator[str]:
    """Relative paths of the regular files under `root` (symlinks are an error: a bundle
    must unpack the same everywhere, and sha256sum would follow them)."""
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in (*dirnames, *filenames):
            if (base / name).is_symlink():
                raise BundleError(f"{base / name} is a symbolic link; bundles hold none")
        for name in filenames:
            path = base / name
            if not path.is_file():
                raise BundleError(f"{path} is not a regular file")
            relative = path.relative_to(root).as_posix()
            check_member_name(relative)
            yield relative


def format_manifest(entries: Iterable[tuple[str, str]]) -> str:
    """`(path, sha256)` pairs as the manifest's text, sorted by path."""
    lines = [f"{digest}  {path}\n" for path, digest in sorted(entries)]
    return "".join(lines)


def write_manifest(root: Path) -> dict[str, str]:
    """Hash every regular file under `root` (but the manifest) into root/MANIFEST.sha256."""
    entries = {rel: sha256_of_path(root / rel) for rel in tree_files(root) if rel != MANIFEST}
    (root / MANIFEST).write_text(format_manifest(entries.items()), encoding="utf-8")
    return entries


def parse_manifest(text: str) -> dict[str, str]:
    """path -> sha256; raises BundleError naming the first bad line."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if match is None:
            raise BundleError(f"{MANIFEST} line {number} is not '<sha256>  <path>': {line!r}")
        digest, path = match.groups()
        check_member_name(path)
        if path in entries:
            raise BundleError(f"{MANIFEST} lists {path} twice")
        entries[path] = digest
    return entries
