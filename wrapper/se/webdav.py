"""The davs:// (and https://) storage plugin: WebDAV over HTTPS, as dCache, XRootD's HTTP, EOS,
StoRM and nginx serve it. `davs://se.kek.jp:2880/belle` + LFN `/belle/user/a/x.root` is
`https://se.kek.jp:2880/belle/belle/user/a/x.root`.

TLS is always verified (the credentials' CA bundle / hashed CA directory, else the system's
CAs); a bearer token, when there is one, goes in `Authorization`. Uploads PUT to a temporary
name beside the target, then MOVE it over (`Overwrite: T`) so readers never see half a file;
downloads stream into a temporary file beside `local`, renamed when complete. Checksums come
from the server when it answers `Want-Digest: adler32` (RFC 3230), else from one streamed GET.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

import httpx

from wrapper.se.base import (
    SEFileNotFoundError,
    SENotSupportedError,
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
from wrapper.se.webdav_xml import (
    LIST_BODY,
    QUOTA_BODY,
    DavEntry,
    DavParseError,
    children,
    parse_digest,
    parse_multistatus,
    space_usage,
)

_CHUNK = 1 << 20
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 60.0
_XML = {"Content-Type": 'application/xml; charset="utf-8"'}


def ssl_context(credentials: StorageCredentials) -> ssl.SSLContext:
    """A verifying client context: the credentials' CAs if any, else the system's."""
    try:
        return ssl.create_default_context(
            cafile=credentials.ca_file or None, capath=credentials.ca_dir or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise StorageError(
            f"cannot load trusted CAs (ca_file={credentials.ca_file!r}, "
            f"ca_dir={credentials.ca_dir!r}): {exc}"
        ) from exc


class _FileBody:
    """A request body read from an open file in chunks; iterable again (from the start)
    when a 307/308 redirect makes httpx send it once more."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source

    def __iter__(self) -> Iterator[bytes]:
        self._source.seek(0)
        while chunk := self._source.read(_CHUNK):
            yield chunk


@register_plugin
class WebdavPlugin(StoragePlugin):
    scheme = "davs"

    def __init__(
        self,
        base_url: str,
        credentials: StorageCredentials | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        super().__init__(base_url, credentials or StorageCredentials.from_environment())
        _scheme, sep, rest = self.base_url.partition("://")
        if not sep or not urlsplit("https://" + rest).hostname:
            raise StorageError(f"WebDAV SE URL must name a host: {base_url!r}")
        self._http_base = "https://" + rest
        self._base_path = unquote(urlsplit(self._http_base).path)
        self._creds = self.credentials or StorageCredentials()
        # Whether MOVE works here (OPTIONS, then what MOVE itself answers); None: not asked yet.
        self._move_ok: bool | None = None
        # trust_env=False: no proxies or .netrc from the environment; the CAs and the token
        # come from the credentials only.
        self._client = httpx.Client(
            verify=ssl_context(self._creds),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=True,
            trust_env=False,
            headers={"User-Agent": "gridpilot-webdav"},
        )

    # -- helpers ---------------------------------------------------------------------------

    def _http_url(self, path: str) -> str:
        return self._http_base + quote(path)

    def _request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
    ) -> httpx.Response:
        return self._client.request(
            method, self._http_url(path), headers=self._headers(headers), content=content
        )

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        try:
            token = self._creds.token()
        except StorageError as exc:
            raise StorageError(f"no usable bearer token for SE {self.base_url}: {exc}") from exc
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _check(self, response: httpx.Response, op: str, lfn: str) -> None:
        """Raise the storage error a non-2xx answer means (the token never appears)."""
        status = response.status_code
        if status < 300:
            return
        redirected = response.history and not response.history[0].url.path.endswith("/")
        if status == 404 or (redirected and response.url.path.endswith("/")):
            what = "is a directory" if status != 404 else "not found"
            raise SEFileNotFoundError(f"{op}: {lfn} {what} on SE {self.base_url}")
        reason = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status in (401, 403):
            if "Authorization" in response.request.headers:
                source = f" from {self._creds.token_source}" if self._creds.token_source else ""
                reason += f": the bearer token{source} was refused"
            else:
                reason += ": no bearer token was sent (none configured), the SE wants one"
        raise SEUnavailableError(f"{op}: SE {self.base_url} refused {lfn}: {reason}")

    @contextmanager
    def _mapped(self, op: str, lfn: str) -> Iterator[None]:
        """Turn transport failures into SEUnavailableError, local I/O errors into StorageError."""
        try:
            yield
        except StorageError:
            raise
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SEUnavailableError(
                f"{op}: SE {self.base_url} is unavailable for {lfn}: {detail}"
            ) from exc
        except OSError as exc:
            raise StorageError(
                f"{op} of {lfn} (SE {self.base_url}): local file error: {exc}"
            ) from exc

    def _supports_move(self) -> bool:
        if self._move_ok is None:
            response = self._request("OPTIONS", "/")
            if response.is_success:
                allow = response.headers.get("Allow", "").upper().replace(" ", "").split(",")
                self._move_ok = "MOVE" in allow
            elif response.status_code in (405, 501):
                self._move_ok = False
            else:  # e.g. 401: the PUT that follows reports it; ask again next time
                return False
        return self._move_ok

    def _put(self, source: BinaryIO, size: int, path: str, lfn: str) -> None:
        headers = {"Content-Length": str(size)}
        response = self._request("PUT", path, headers, content=_FileBody(source))
        if response.status_code == 409:  # RFC 4918: a parent collection is missing
            self._make_parents(path, lfn)
            response = self._request("PUT", path, headers, content=_FileBody(source))
        self._check(response, "upload", lfn)

    def _make_parents(self, path: str, lfn: str) -> None:
        """MKCOL the missing collections above `path`: nearest first, upwards while the
        server answers 409, then the missing ones downwards (405: it exists already)."""
        missing: list[str] = []
        for parent in PurePosixPath(path).parents[:-1]:
            response = self._request("MKCOL", f"{parent}/")
            if response.status_code != 409:
                if response.status_code != 405:
                    self._check(response, "upload", lfn)
                break
            missing.append(f"{parent}/")
        else:
            raise SEUnavailableError(
                f"upload: SE {self.base_url} refused {lfn}: its base collection does not exist"
            )
        for collection in reversed(missing):
            response = self._request("MKCOL", collection)
            if response.status_code != 405:
                self._check(response, "upload", lfn)

    def _move(self, source: str, target: str, lfn: str) -> bool:
        """MOVE over `target`; False when the server does not do MOVE."""
        headers = {"Destination": self._http_url(target), "Overwrite": "T"}
        response = self._request("MOVE", source, headers)
        if response.status_code in (405, 501):
            return False
        self._check(response, "upload", lfn)
        return True

    def _discard(self, path: str) -> None:
        # Best effort: the SE failing may be why the upload failed.
        with contextlib.suppress(httpx.HTTPError, StorageError):
            self._request("DELETE", path)

    @contextmanager
    def _get(self, lfn: str, op: str) -> Iterator[httpx.Response]:
        """The streamed, checked answer to GET (uncompressed, so Content-Length counts it)."""
        headers = self._headers({"Accept-Encoding": "identity"})
        with self._client.stream("GET", self._http_url(lfn), headers=headers) as response:
            self._check(response, op, lfn)
            yield response

    def _propfind(
        self, path: str, depth: str, body: bytes, op: str, lfn: str
    ) -> list[DavEntry] | None:
        """The entries of a PROPFIND answer; None when `path` is not there (404)."""
        response = self._request("PROPFIND", path, {"Depth": depth, **_XML}, body)
        if response.status_code == 404:
            return None
        self._check(response, op, lfn)
        try:
            return parse_multistatus(response.content)
        except DavParseError as exc:
            raise SEUnavailableError(
                f"{op}: SE {self.base_url} answered an unreadable PROPFIND for {lfn}: {exc}"
            ) from exc

    # -- the plugin interface --------------------------------------------------------------

    def upload(self, local: Path, lfn: str) -> None:
        lfn = self.checked_lfn(lfn)
        try:
            source = local.open("rb")
            size = os.fstat(source.fileno()).st_size
        except OSError as exc:
            raise StorageError(
                f"upload of {lfn} to {self.base_url}: cannot read {local}: {exc}"
            ) from exc
        with source, self._mapped("upload", lfn):
            if not self._supports_move():
                self._put(source, size, lfn, lfn)
                return
            name = temporary_name()
            temp = str(PurePosixPath(lfn).with_name(name))
            try:
                self._put(source, size, temp, lfn)
                moved = self._move(temp, lfn, lfn)
            except Exception:
                self._discard(temp)
                raise
            if not moved:
                self._discard(temp)
                self._move_ok = False
                self._put(source, size, lfn, lfn)

    def download(self, lfn: str, local: Path) -> None:
        lfn = self.checked_lfn(lfn)
        with (
            self._mapped("download", lfn),
            self._get(lfn, "download") as response,
            atomic_file(local) as out,
        ):
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
            expected = response.headers.get("Content-Length", "")
            if expected.isdigit() and out.tell() != int(expected):
                raise SEUnavailableError(
                    f"download: SE {self.base_url} sent {out.tell()} of the "
                    f"{expected} bytes of {lfn}"
                )

    def delete(self, lfn: str) -> None:
        lfn = self.checked_lfn(lfn)
        with self._mapped("delete", lfn):
            self._check(self._request("DELETE", lfn), "delete", lfn)

    def stat(self, lfn: str) -> int:
        lfn = self.checked_lfn(lfn)
        with self._mapped("stat", lfn):
            response = self._request("HEAD", lfn)
            self._check(response, "stat", lfn)
            length = response.headers.get("Content-Length", "")
            if length.isdigit():
                return int(length)
            entries = self._propfind(lfn, "0", LIST_BODY, "stat", lfn)
        if not entries or entries[0].is_collection or entries[0].size is None:
            raise SEUnavailableError(f"stat: SE {self.base_url} reports no size for {lfn}")
        return entries[0].size

    def checksum(self, lfn: str) -> str:
        lfn = self.checked_lfn(lfn)
        with self._mapped("checksum", lfn):
            response = self._request("HEAD", lfn, {"Want-Digest": "adler32"})
            self._check(response, "checksum", lfn)
            offered = parse_digest(", ".join(response.headers.get_list("Digest")))
            if offered is not None:
                return offered
            value = 1
            with self._get(lfn, "checksum") as response:
                for chunk in response.iter_bytes(_CHUNK):
                    value = zlib.adler32(chunk, value)
        return f"{value & 0xFFFFFFFF:08x}"

    def list(self, lpn: str) -> list[str]:
        parts = PurePosixPath("/" + lpn.lstrip("/")).parts[1:]
        if any(p in ("..", ".") for p in parts):
            raise StorageError(f"invalid LPN {lpn!r} for SE {self.base_url}")
        top = "/" + "/".join(parts)
        found: list[str] = []
        pending, seen = [top], {top}
        with self._mapped("list", lpn):
            while pending:
                path = pending.pop()
                # 404: nothing there ([] for `lpn`), or a collection gone meanwhile.
                entries = self._propfind(path, "1", LIST_BODY, "list", lpn) or []
                inside = children(entries, self._base_path, path)
                if inside is None:
                    raise SEUnavailableError(
                        f"list: {lpn} on SE {self.base_url} is a file, not a directory"
                    )
                files, collections = inside
                found += [f for f in files if not is_temporary(PurePosixPath(f).name)]
                pending += [c + "/" for c in collections if c + "/" not in seen]
                seen.update(c + "/" for c in collections)
        return sorted(found)

    def space(self) -> SpaceUsage:
        with self._mapped("space", "/"):
            entries = self._propfind("/", "0", QUOTA_BODY, "space", "/")
        if entries is None:
            raise SEUnavailableError(f"space: SE {self.base_url} has no base collection")
        usage = space_usage(entries)
        if usage is not None:
            return usage
        raise SENotSupportedError(
            f"SE {self.base_url} does not report its space (no RFC 4331 quota properties)"
        )

    def close(self) -> None:
        self._client.close()


@register_plugin
class HttpsPlugin(WebdavPlugin):
    """The same plugin for SEs named by https:// URLs."""

    scheme = "https"
