"""Sandboxes on the client side: build the input tarball, stream it up, fetch and unpack outputs."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from gridpilot.archives import NotAnArchiveError, UnsafeArchiveError, safe_extract
from gridpilot.cli.common import CliError
from gridpilot.client import CentralClient
from gridpilot.v1 import sandboxes_pb2

# Well under the channel's message cap; one chunk per message keeps memory flat on both sides.
CHUNK_BYTES = 1 << 20


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Fixed owner and time make the same inputs give the same bytes, so the same sha256 sandbox
    # id: a resubmission with unchanged files uploads nothing new on central.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def build_input_sandbox(steering_file: Path, extra_files: Sequence[Path]) -> bytes:
    """A tar.gz with the steering file and extra files (directories recursively) at the top."""
    members: dict[str, Path] = {}
    for path in (steering_file, *extra_files):
        if not path.exists():
            raise CliError(f"file not found: {path}")
        name = path.name
        if name in members and members[name].resolve() != path.resolve():
            raise CliError(f"two input files share the name {name!r}: {members[name]} and {path}")
        members[name] = path
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            try:
                tar.add(members[name], arcname=name, recursive=True, filter=_normalized)
            except OSError as exc:
                raise CliError(f"cannot read {members[name]}: {exc.strerror or exc}") from exc
    return gzip.compress(raw.getvalue(), mtime=0)


def _upload_messages(
    data: bytes, kind: sandboxes_pb2.SandboxHeader.Kind.ValueType
) -> Iterator[sandboxes_pb2.UploadSandboxRequest]:
    yield sandboxes_pb2.UploadSandboxRequest(
        header=sandboxes_pb2.SandboxHeader(kind=kind, size=len(data))
    )
    view = memoryview(data)
    for start in range(0, len(data), CHUNK_BYTES):
        yield sandboxes_pb2.UploadSandboxRequest(data=bytes(view[start : start + CHUNK_BYTES]))


def upload_input_sandbox(client: CentralClient, data: bytes) -> str:
    """Stream the tarball to central; returns the sandbox id central computed."""
    response: sandboxes_pb2.UploadSandboxResponse = client.call(
        client.sandboxes.UploadSandbox,
        _upload_messages(data, sandboxes_pb2.SandboxHeader.KIND_INPUT),
        timeout=client.settings.timeout + len(data) / 1_000_000,
    )
    if response.size != len(data):
        raise CliError(
            f"central stored {response.size} bytes of the input sandbox, {len(data)} were sent"
        )
    return response.sandbox_id


def download_sandbox(client: CentralClient, sandbox_id: str, target: Path) -> int:
    """Write the sandbox to `target` (via a temporary name); returns its size."""
    partial = target.with_name(target.name + ".part")
    size = 0
    try:
        with partial.open("wb") as f:
            for chunk in client.stream(
                client.sandboxes.DownloadSandbox,
                sandboxes_pb2.DownloadSandboxRequest(sandbox_id=sandbox_id),
            ):
                f.write(chunk.data)
                size += len(chunk.data)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return size


def extract_safely(archive: Path, dest: Path) -> list[str]:
    """Unpack a (possibly compressed) tarball under `dest`, refusing any member that could
    land outside it (gridpilot/archives.py). Returns the extracted file names."""
    try:
        return safe_extract(archive, dest)
    except NotAnArchiveError as exc:
        raise CliError(f"sandbox {archive.name} is not a readable tarball: {exc}") from exc
    except UnsafeArchiveError as exc:
        raise CliError(f"refusing unsafe sandbox {archive.name}: {exc}") from exc
