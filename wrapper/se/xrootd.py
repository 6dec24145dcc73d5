"""The root:// storage plugin: an XRootD SE through the XRootD Python bindings.

`root://host:1094//belle` + LFN `/belle/user/a/p/sub00/x.root` is the path
`/belle/belle/user/a/p/sub00/x.root` on that server.

Uploads write a temporary name in the target directory, opened in POSC mode (persist on
successful close: a server whose client vanishes mid-write removes the file itself), then
`mv` it over the final name, so a reader never sees half a file under the real name; on a
failure the plugin removes the temporary file too. The size and the server's adler32 of the
temporary file are checked before the `mv`. Downloads write a local temporary file next to the
target and rename it when complete. Checksums come from the server (`query checksum`,
`xrootd.chksum adler32` in its config: the value it recorded, as the catalogue's checksum
does), and are computed by reading the file only when the server offers no adler32.
"""

from __future__ import annotations

import itertools
import os
import re
import zlib
from collections.abc import Generator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from XRootD import client
from XRootD.client.flags import AccessMode, DirListFlags, OpenFlags, QueryCode, StatInfoFlags

from wrapper.se.base import (
    SEFileNotFoundError,
    SEUnavailableError,
    SpaceUsage,
    StorageError,
    StoragePlugin,
    atomic_file,
    is_temporary,
    register_plugin,
    temporary_name,
)
from wrapper.se.credentials import StorageCredentials

_CHUNK = 4 << 20

# Server error numbers (XProtocol.hh) the plugin tells apart.
_KXR_NO_SPACE = 3009
_KXR_NOT_FOUND = 3011
_KXR_UNSUPPORTED = 3013
_KXR_IS_DIRECTORY = 3016
# A checksum query's answer, e.g. "adler32 2cc72db5"; any other algorithm counts as none.
_ADLER32_ANSWER = re.compile(r"adler32\s+([0-9a-fA-F]{1,8})", re.IGNORECASE)

# XrdCl's defaults make a dead SE cost minutes: 5 connection attempts per 120 s window, a
# stream that failed once refuses every request for 1800 s (a restarted SE stays "down" for
# this process), requests time out after 1800 s and timeouts are checked only every 15 s.
# Measured with the bindings 6.2.1 against xrootd 5.5: a refused connection then fails a
# stat in 15 s (its 3 s timeout rounded up to the 15 s tick); with these values in 0.01 s,
# a listener that never answers in 3 s, and a stopped-then-restarted SE answers again at
# once. EnvPutInt works when called before the first client object; the XRD_* variables do
# too but must be set before the process starts, so an explicit XRD_* value in the
# environment wins and nothing here overrides it. The settings are process-wide.
_CLIENT_SETTINGS = {
    "ConnectionRetry": 1,
    "ConnectionWindow": 2,
    "StreamErrorWindow": 0,
    # Per request (one chunk of at most _CHUNK bytes), so a slow WAN still fits in it.
    "RequestTimeout": 60,
    "TimeoutResolution": 1,
}


def _configure_client() -> None:
    for name, value in _CLIENT_SETTINGS.items():
        if f"XRD_{name.upper()}" not in os.environ:
            client.EnvPutInt(name, value)


_configure_client()


@register_plugin
class XrootdPlugin(StoragePlugin):
    scheme = "root"

    def __init__(self, base_url: str, credentials: StorageCredentials | None = None) -> None:
        super().__init__(base_url, credentials)
        parts = urlsplit(self.base_url)
        if not parts.hostname or parts.query or parts.fragment:
            raise StorageError(f"root SE URL must be root://host[:port]//path: {base_url!r}")
        self.server_url = f"root://{parts.netloc}"
        self.base_path = "/" + parts.path.strip("/") if parts.path.strip("/") else ""
        self._fs: Any = None

    # -- helpers ---------------------------------------------------------------------------

    def _fs_handle(self) -> Any:
        if self._fs is None:
            self._fs = client.FileSystem(self.server_url)
        return self._fs

    def _path(self, lfn: str) -> str:
        return self.base_path + self.checked_lfn(lfn)

    def _url(self, path: str) -> str:
        return f"{self.server_url}/{path}"

    def _check(self, op: str, lfn: str, status: Any) -> None:
        """Raise the storage error for a failed XRootD status."""
        if status.ok:
            return
        message = str(status.message).strip()
        # For an upload, a path vanishing under it is the SE failing, not a missing file.
        if status.errno == _KXR_NOT_FOUND and op != "upload":
            raise SEFileNotFoundError(f"{op}: {lfn} not found on SE {self.base_url} ({message})")
        if status.errno == _KXR_IS_DIRECTORY:
            raise SEFileNotFoundError(f"{op}: {lfn} is a directory on SE {self.base_url}")
        if status.errno == _KXR_NO_SPACE:
            message = f"no space left on the SE ({message})"
        raise SEUnavailableError(f"{op}: SE {self.base_url} failed for {lfn}: {message}")

    def _stat(self, op: str, lfn: str, path: str) -> Any:
        status, info = self._fs_handle().stat(path)
        self._check(op, lfn, status)
        if info.flags & StatInfoFlags.IS_DIR:
            raise SEFileNotFoundError(f"{op}: {lfn} is a directory on SE {self.base_url}")
        return info

    def _chunks(self, op: str, lfn: str, path: str) -> Generator[bytes, None, None]:
        """The file's content, read chunk by chunk."""
        remote = client.File()
        status, _ = remote.open(self._url(path), OpenFlags.READ)
        self._check(op, lfn, status)
        try:
            offset = 0
            while True:
                status, data = remote.read(offset, _CHUNK)
                self._check(op, lfn, status)
                if not data:
                    return
                offset += len(data)
                yield bytes(data)
        finally:
            _close_quietly(remote)

    def _write_remote(self, source: BinaryIO, local: Path, lfn: str, tmp: str) -> tuple[int, str]:
        """Write `source` to the new file `tmp`; its size and adler32."""
        remote = client.File()
        mode = AccessMode.UR | AccessMode.UW | AccessMode.GR | AccessMode.OR
        flags = OpenFlags.NEW | OpenFlags.MAKEPATH | OpenFlags.POSC
        status, _ = remote.open(self._url(tmp), flags, mode)
        self._check("upload", lfn, status)
        offset, value = 0, 1
        try:
            while True:
                try:
                    chunk = source.read(_CHUNK)
                except OSError as exc:
                    raise StorageError(
                        f"upload of {lfn} to {self.base_url}: cannot read {local}: {exc}"
                    ) from exc
                if not chunk:
                    break
                status, _ = remote.write(chunk, offset)
                self._check("upload", lfn, status)
                offset += len(chunk)
                value = zlib.adler32(chunk, value)
        except BaseException:
            _close_quietly(remote)
            raise
        # With POSC, only a successful close makes the file persist.
        status, _ = remote.close()
        self._check("upload", lfn, status)
        return offset, f"{value & 0xFFFFFFFF:08x}"

    def _verify(self, lfn: str, tmp: str, size: int, adler32: str) -> None:
        """Check what the server stored: xrootd 5.5 acknowledges a short write on a full
        disk (pwrite stored only part of a request) as a success."""
        stored = int(self._stat("upload", lfn, tmp).size)
        if stored != size:
            raise SEUnavailableError(
                f"upload: SE {self.base_url} stored {stored} of {size} bytes of {lfn} "
                "(no space left on the SE?)"
            )
        recorded = self._server_adler32("upload", lfn, tmp)
        if recorded is not None and recorded != adler32:
            raise SEUnavailableError(
                f"upload: SE {self.base_url} stored {lfn} with adler32 {recorded}, sent {adler32}"
            )

    def _server_adler32(self, op: str, lfn: str, path: str) -> str | None:
        """The server's adler32 of `path`; None when it offers none."""
        status, response = self._fs_handle().query(QueryCode.CHECKSUM, path)
        if not status.ok:
            if status.errno == _KXR_UNSUPPORTED:
                return None
            self._check(op, lfn, status)
        answer = bytes(response).rstrip(b"\0").decode(errors="replace").strip()
        found = _ADLER32_ANSWER.fullmatch(answer)
        return f"{int(found.group(1), 16):08x}" if found else None

    # -- the plugin interface --------------------------------------------------------------

    def upload(self, local: Path, lfn: str) -> None:
        path = self._path(lfn)
        try:
            source = local.open("rb")
        except OSError as exc:
            raise StorageError(
                f"upload of {lfn} to {self.base_url}: cannot read {local}: {exc}"
            ) from exc
        parent = PurePosixPath(path).parent
        tmp = str(parent / temporary_name())
        with source:
            try:
                self._verify(lfn, tmp, *self._write_remote(source, local, lfn, tmp))
                status, _ = self._fs_handle().mv(tmp, path)
                self._check("upload", lfn, status)
            except BaseException:
                # Best effort: a server that is down keeps it, and removes it by itself as an
                # unpersisted POSC file when the write never completed.
                self._fs_handle().rm(tmp)
                raise

    def download(self, lfn: str, local: Path) -> None:
        chunks = self._chunks("download", lfn, self._path(lfn))
        try:
            # Read from the SE first: a missing file leaves nothing behind locally.
            first = next(chunks, b"")
            with atomic_file(local) as out:
                for chunk in itertools.chain([first], chunks):
                    out.write(chunk)
        except OSError as exc:
            raise StorageError(
                f"download of {lfn} from {self.base_url}: cannot write {local}: {exc}"
            ) from exc
        finally:
            chunks.close()

    def delete(self, lfn: str) -> None:
        status, _ = self._fs_handle().rm(self._path(lfn))
        self._check("delete", lfn, status)

    def stat(self, lfn: str) -> int:
        return int(self._stat("stat", lfn, self._path(lfn)).size)

    def checksum(self, lfn: str) -> str:
        path = self._path(lfn)
        # Stat first: xrootd 5.5 never answers a checksum query about a directory.
        self._stat("checksum", lfn, path)
        if (recorded := self._server_adler32("checksum", lfn, path)) is not None:
            return recorded
        value = 1
        for chunk in self._chunks("checksum", lfn, path):
            value = zlib.adler32(chunk, value)
        return f"{value & 0xFFFFFFFF:08x}"

    def list(self, lpn: str) -> list[str]:
        rel = PurePosixPath("/" + lpn.lstrip("/")).parts[1:]
        if any(p in ("..", ".") for p in rel):
            raise StorageError(f"invalid LPN {lpn!r} for SE {self.base_url}")
        top = self.base_path + "/" + "/".join(rel)
        status, listing = self._fs_handle().dirlist(top, DirListFlags.STAT | DirListFlags.RECURSIVE)
        if status.errno == _KXR_NOT_FOUND:
            return []
        self._check("list", lpn, status)
        found: list[str] = []
        for entry in listing:
            if entry.statinfo.flags & StatInfoFlags.IS_DIR:
                continue
            full = PurePosixPath(str(listing.parent), str(entry.name))
            if is_temporary(full.name):
                continue  # an upload in progress (or one a dead server still holds)
            found.append("/" + full.relative_to(self.base_path or "/").as_posix())
        return sorted(found)

    def space(self) -> SpaceUsage:
        # The server answers for the space holding the path, and with garbage for a path
        # that does not exist (xrootd 5.5), so ask about the base only once it exists.
        path = self.base_path or "/"
        if not self._fs_handle().stat(path)[0].ok:
            path = "/"
        status, response = self._fs_handle().query(QueryCode.SPACE, path)
        self._check("space", path, status)
        fields = parse_qs(bytes(response).rstrip(b"\0").decode())
        try:
            return SpaceUsage(
                total_bytes=int(fields["oss.space"][0]), free_bytes=int(fields["oss.free"][0])
            )
        except (KeyError, ValueError) as exc:
            raise SEUnavailableError(
                f"space: SE {self.base_url} sent an unreadable space report: {response!r}"
            ) from exc

    def close(self) -> None:
        # XrdCl pools connections per process; dropping the handle is all a caller can do.
        self._fs = None


def _close_quietly(remote: Any) -> None:
    """Close an XRootD file if it is open, whatever the outcome (on an error path)."""
    if remote.is_open():
        remote.close()
