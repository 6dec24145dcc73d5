"""The davs:// / https:// plugin against a real nginx WebDAV server over TLS
(tests/support/webdav.py), plus its pure parsers on captured server answers."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes
from tests.support.sshd import free_port
from tests.support.webdav import DIGEST, WebdavServer, running_webdav
from tests.wrapper.se.conformance import StorageConformance
from wrapper.se import (
    SEFileNotFoundError,
    SENotSupportedError,
    SEUnavailableError,
    StorageCredentials,
    StorageError,
    open_storage,
)
from wrapper.se.webdav import HttpsPlugin, WebdavPlugin
from wrapper.se.webdav_xml import (
    DavParseError,
    parse_digest,
    parse_multistatus,
    relative_lfn,
    space_usage,
)

LFN = "/belle/user/alice/p1/sub00/out_1_1.root"


@pytest.fixture(scope="module")
def server() -> Iterator[WebdavServer]:
    with (
        running_webdav(token=secrets.token_urlsafe(24)) as server,
    ):
        yield server


def connect(url: str, *, token: str | None = "", ca_file: Path | str = "") -> WebdavPlugin:
    storage = open_storage(url, StorageCredentials(bearer_token=token or "", ca_file=str(ca_file)))
    assert isinstance(storage, WebdavPlugin)
    return storage


@pytest.fixture
def storage(server: WebdavServer) -> Iterator[WebdavPlugin]:
    storage = connect(server.url, token=server.token, ca_file=server.ca_file)
    yield storage
    storage.close()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def requests(server: WebdavServer, containing: str, at_least: int) -> list[tuple[str, str, int]]:
    """What the server logged, with MOVE's 204 shown as 201 (nginx answers a MOVE onto a new
    name either way)."""
    return [
        (method, uri, 201 if (method, status) == ("MOVE", 204) else status)
        for method, uri, status in server.requests(containing, at_least=at_least)
    ]


def unique(name: str = "f.root") -> str:
    return f"/belle/test/{secrets.token_hex(6)}/{name}"


class TestWebdavConformance(StorageConformance):
    @pytest.fixture
    def unreachable_storage(self, server: WebdavServer) -> Iterator[WebdavPlugin]:
        storage = connect(
            f"davs://127.0.0.1:{free_port()}/se", token=server.token, ca_file=server.ca_file
        )
        yield storage
        storage.close()


# -- schemes, credentials, TLS ---------------------------------------------------------------


def test_both_schemes_open_their_plugin(server: WebdavServer, tmp_path: Path) -> None:
    davs = connect(server.url, token=server.token, ca_file=server.ca_file)
    https = connect(server.location_url("se", "https"), token=server.token, ca_file=server.ca_file)
    assert type(davs) is WebdavPlugin
    assert isinstance(https, HttpsPlugin)
    lfn = unique()
    https.upload(write(tmp_path / "f", b"over https"), lfn)
    assert davs.stat(lfn) == 10
    https.download(lfn, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"over https"
    assert server.data_path(lfn).read_bytes() == b"over https"


@pytest.mark.parametrize("token", [None, "wrong-token-value-42"])
def test_missing_or_wrong_token_is_refused(
    server: WebdavServer, tmp_path: Path, token: str | None
) -> None:
    storage = connect(server.url, token=token, ca_file=server.ca_file)
    for call in (
        lambda: storage.stat(LFN),
        lambda: storage.upload(write(tmp_path / "f", b""), LFN),
    ):
        with pytest.raises(SEUnavailableError) as info:
            call()
        message = str(info.value)
        assert "HTTP 401" in message
        assert server.url in message
        assert LFN in message
        assert ("was refused" if token else "no bearer token was sent") in message
        assert str(server.token) not in message
        assert token is None or token not in message


def test_broken_token_source_is_a_local_error(server: WebdavServer) -> None:
    credentials = StorageCredentials(
        token_error="bearer token file /x is readable by others", ca_file=str(server.ca_file)
    )
    storage = open_storage(server.url, credentials)
    with pytest.raises(StorageError, match="readable by others") as info:
        storage.stat(LFN)
    assert not isinstance(info.value, SEUnavailableError)
    assert server.url in str(info.value)


def test_untrusted_ca_fails_tls_verification(server: WebdavServer) -> None:
    for ca_file in (server.pki.other_ca, ""):  # another CA; the system's CAs
        storage = connect(server.url, token=server.token, ca_file=ca_file)
        with pytest.raises(SEUnavailableError, match="CERTIFICATE_VERIFY_FAILED") as info:
            storage.stat(LFN)
        assert server.url in str(info.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for the CA hash")
def test_hashed_ca_directory_is_trusted(server: WebdavServer, tmp_path: Path) -> None:
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(server.ca_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ca_dir = tmp_path / "certificates"
    ca_dir.mkdir()
    shutil.copy(server.ca_file, ca_dir / f"{subject_hash}.0")
    credentials = StorageCredentials(bearer_token=str(server.token), ca_dir=str(ca_dir))
    with pytest.raises(SEFileNotFoundError):
        open_storage(server.url, credentials).stat(unique())


def test_unloadable_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot load trusted CAs"):
        WebdavPlugin("davs://127.0.0.1:1/se", StorageCredentials(ca_file=str(tmp_path / "no")))


def test_url_without_host_is_refused() -> None:
    with pytest.raises(StorageError, match="must name a host"):
        WebdavPlugin("davs:///se", StorageCredentials())


def test_credentials_from_the_environment(
    server: WebdavServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = write(tmp_path / "token", f"{server.token}\n".encode())
    token_file.chmod(0o600)
    monkeypatch.delenv("BEARER_TOKEN", raising=False)
    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    lfn = unique()
    storage = open_storage(server.url)
    storage.upload(write(tmp_path / "f", b"env"), lfn)
    assert storage.stat(lfn) == 3
    token_file.chmod(0o644)
    with pytest.raises(StorageError, match="readable by others"):
        open_storage(server.url).stat(lfn)


# -- uploads: temporary name + MOVE, servers without MOVE, MKCOL on 409 ------------------------


def test_upload_puts_a_temporary_then_moves_it(
    storage: WebdavPlugin, server: WebdavServer, tmp_path: Path
) -> None:
    lfn = unique()
    storage.upload(write(tmp_path / "f", b"atomic"), lfn)
    served = requests(server, lfn.rsplit("/", 1)[0], 2)
    assert [(method, status) for method, _uri, status in served] == [("PUT", 201), ("MOVE", 201)]
    assert served[0][1].endswith(".part")
    assert "/.gridpilot-" in served[0][1]
    assert [p.name for p in server.data_path(lfn).parent.iterdir()] == ["f.root"]


def test_server_without_move_gets_the_file_in_place(server: WebdavServer, tmp_path: Path) -> None:
    storage = connect(server.location_url("nomove"), token=server.token, ca_file=server.ca_file)
    lfn = unique()
    storage.upload(write(tmp_path / "f", b"one"), lfn)
    storage.upload(write(tmp_path / "f", b"two two"), lfn)
    served = requests(server, lfn.rsplit("/", 1)[0], 5)
    assert [(method, status) for method, _uri, status in served] == [
        ("PUT", 201),  # the temporary
        ("MOVE", 405),
        ("DELETE", 204),  # the temporary, gone
        ("PUT", 201),
        ("PUT", 204),  # the second upload knows: straight in place
    ]
    assert server.data_path(lfn, "nomove").read_bytes() == b"two two"
    assert [p.name for p in server.data_path(lfn, "nomove").parent.iterdir()] == ["f.root"]


def test_missing_collections_are_made_on_409(server: WebdavServer, tmp_path: Path) -> None:
    storage = connect(server.location_url("strict"), token=server.token, ca_file=server.ca_file)
    top = f"/{secrets.token_hex(6)}"
    lfn = f"{top}/a/b/x.root"
    storage.upload(write(tmp_path / "f", b"deep"), lfn)
    served = [(m, u.removeprefix("/strict"), s) for m, u, s in requests(server, top, 8)]
    temp = served[0][1]
    assert temp.startswith(f"{top}/a/b/.gridpilot-")
    assert served == [
        ("PUT", temp, 409),
        ("MKCOL", f"{top}/a/b/", 409),
        ("MKCOL", f"{top}/a/", 409),
        ("MKCOL", f"{top}/", 201),
        ("MKCOL", f"{top}/a/", 201),
        ("MKCOL", f"{top}/a/b/", 201),
        ("PUT", temp, 201),
        ("MOVE", temp, 201),
    ]
    assert server.data_path(lfn, "strict").read_bytes() == b"deep"
    assert storage.list(top) == [lfn]


# -- checksums ---------------------------------------------------------------------------------


def test_checksum_is_computed_when_the_server_offers_none(
    storage: WebdavPlugin, server: WebdavServer, tmp_path: Path
) -> None:
    data = b"no digest from nginx " * 1000
    lfn = unique()
    storage.upload(write(tmp_path / "f", data), lfn)
    assert storage.checksum(lfn) == adler32_of_bytes(data)
    assert [(m, s) for m, _u, s in server.requests(lfn, at_least=2)] == [
        ("HEAD", 200),
        ("GET", 200),
    ]


def test_checksum_comes_from_the_digest_header(server: WebdavServer, tmp_path: Path) -> None:
    storage = connect(server.location_url("digest"), token=server.token, ca_file=server.ca_file)
    lfn = unique()
    storage.upload(write(tmp_path / "f", b"data"), lfn)
    # The location answers a fixed digest, not the file's: proof it came from the header.
    assert storage.checksum(lfn) == DIGEST != adler32_of_bytes(b"data")
    assert storage.stat(lfn) == 4
    # No GET between checksum's HEAD and stat's.
    assert [m for m, _u, _s in server.requests(lfn, at_least=2)] == ["HEAD", "HEAD"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("adler32=0a1b2c3d", "0a1b2c3d"),
        ("ADLER32=0A1B2C3D", "0a1b2c3d"),
        ("md5=HUXZLQLMuI/KZ5KDcJPcOA==, adler32=1", "00000001"),
        ('sha-256=abc, adler32="ff00ff00"', "ff00ff00"),
        ("md5=HUXZLQLMuI/KZ5KDcJPcOA==", None),
        ("adler32=not-hex", None),
        ("adler32=123456789", None),
        ("adler32", None),
        ("", None),
    ],
)
def test_parse_digest(header: str, expected: str | None) -> None:
    assert parse_digest(header) == expected


# -- failures ----------------------------------------------------------------------------------


def test_server_stopped_mid_use_then_restarted(tmp_path: Path) -> None:
    with running_webdav() as server:
        storage = connect(server.url, ca_file=server.ca_file)
        storage.upload(write(tmp_path / "f", b"kept"), LFN)
        port, pid = server.port, server.pid
        server.stop()
        started = time.monotonic()
        for call in (lambda: storage.stat(LFN), lambda: storage.upload(tmp_path / "f", LFN)):
            with pytest.raises(SEUnavailableError) as info:
                call()
            assert server.url in str(info.value)
            assert LFN in str(info.value)
        assert time.monotonic() - started < 3
        server.start()
        assert (server.port, server.pid != pid) == (port, True)
        assert storage.stat(LFN) == 4
        assert storage.checksum(LFN) == adler32_of_bytes(b"kept")


def test_silent_server_times_out_in_seconds(server: WebdavServer) -> None:
    with socket.socket() as silent:
        # Listens (the kernel completes TCP handshakes) but never accepts: TLS never starts.
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"davs://127.0.0.1:{silent.getsockname()[1]}/se"
        credentials = StorageCredentials(ca_file=str(server.ca_file))
        storage = WebdavPlugin(url, credentials, connect_timeout=0.3, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SEUnavailableError, match="Timeout"):
            storage.stat(LFN)
        assert time.monotonic() - started < 2


def test_local_write_failure_is_a_local_error(storage: WebdavPlugin, tmp_path: Path) -> None:
    lfn = unique()
    storage.upload(write(tmp_path / "f", b"x"), lfn)
    in_the_way = write(tmp_path / "a-file", b"")
    with pytest.raises(StorageError, match="local file error") as info:
        storage.download(lfn, in_the_way / "x")
    assert not isinstance(info.value, SEUnavailableError)
    with pytest.raises(StorageError, match="cannot read"):
        storage.upload(tmp_path / "absent", lfn)


def test_stat_of_a_directory(storage: WebdavPlugin, tmp_path: Path) -> None:
    lfn = unique()
    storage.upload(write(tmp_path / "f", b"x"), lfn)
    with pytest.raises(SEFileNotFoundError, match="is a directory"):
        storage.stat(lfn.rsplit("/", 1)[0])


def test_space_is_not_reported_by_nginx(storage: WebdavPlugin) -> None:
    with pytest.raises(SENotSupportedError, match="RFC 4331"):
        storage.space()


# -- listing -----------------------------------------------------------------------------------


def test_list_decodes_percent_encoded_names(
    storage: WebdavPlugin, server: WebdavServer, tmp_path: Path
) -> None:
    top = unique("")
    lfns = [f"{top}a b/c#d%e.root", f"{top}ü/x?y.root", f"{top}plain.root"]
    for lfn in lfns:
        storage.upload(write(tmp_path / "f", b"x"), lfn)
        assert server.data_path(lfn).is_file()
    assert storage.list(top) == sorted(lfns)
    assert storage.stat(lfns[0]) == 1


def test_list_skips_temporary_uploads_and_refuses_files(
    storage: WebdavPlugin, server: WebdavServer, tmp_path: Path
) -> None:
    lfn = unique()
    storage.upload(write(tmp_path / "f", b"x"), lfn)
    write(server.data_path(lfn).with_name(".gridpilot-0123.part"), b"half")
    top = lfn.rsplit("/", 1)[0]
    assert storage.list(top) == [lfn]
    with pytest.raises(SEUnavailableError, match="is a file"):
        storage.list(lfn)
    with pytest.raises(StorageError, match="invalid LPN"):
        storage.list(f"{top}/../..")


# -- PROPFIND parsing on captured answers ------------------------------------------------------

# nginx 1.22 + dav_ext, PROPFIND Depth: 1 of a collection holding "c#d%e.root".
NGINX_LISTING = b"""<?xml version="1.0" encoding="utf-8" ?>
<D:multistatus xmlns:D="DAV:">
<D:response>
<D:href>/se/a%20b/</D:href>
<D:propstat>
<D:prop>
<D:displayname>a b</D:displayname>
<D:getlastmodified>Sat, 05 Dec 2026 23:33:07 GMT</D:getlastmodified>
<D:resourcetype><D:collection/></D:resourcetype>
<D:lockdiscovery/>
<D:supportedlock>
</D:supportedlock>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
<D:response>
<D:href>/se/a%20b/c%23d%25e.root</D:href>
<D:propstat>
<D:prop>
<D:displayname>c#d%e.root</D:displayname>
<D:getcontentlength>5</D:getcontentlength>
<D:getlastmodified>Sat, 05 Dec 2026 23:33:07 GMT</D:getlastmodified>
<D:resourcetype></D:resourcetype>
<D:lockdiscovery/>
<D:supportedlock>
</D:supportedlock>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
</D:multistatus>
"""

# The shape dCache and Apache mod_dav answer a quota PROPFIND in: absolute hrefs, another
# namespace prefix, the properties it lacks under a 404 propstat.
QUOTA_ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<d:multistatus xmlns:d="DAV:" xmlns:ns1="http://www.dcache.org/2013/webdav">
  <d:response>
    <d:href>https://dcache.example.org:2880/belle/</d:href>
    <d:propstat>
      <d:prop>
        <d:quota-available-bytes>7000</d:quota-available-bytes>
        <d:quota-used-bytes>3000</d:quota-used-bytes>
      </d:prop>
      <d:status>HTTP/1.1 200 OK</d:status>
    </d:propstat>
    <d:propstat>
      <d:prop><d:getcontentlength>99</d:getcontentlength><ns1:Checksums/></d:prop>
      <d:status>HTTP/1.1 404 Not Found</d:status>
    </d:propstat>
  </d:response>
</d:multistatus>
"""


def test_parse_nginx_listing() -> None:
    top, file = parse_multistatus(NGINX_LISTING)
    assert (top.path, top.is_collection, top.size) == ("/se/a b", True, None)
    assert (file.path, file.is_collection, file.size) == ("/se/a b/c#d%e.root", False, 5)
    assert relative_lfn(file.path, "/se") == "/a b/c#d%e.root"


def test_parse_quota_answer() -> None:
    (entry,) = parse_multistatus(QUOTA_ANSWER)
    assert entry.path == "/belle"
    assert entry.size is None  # reported under 404: not found
    usage = space_usage([entry])
    assert usage is not None
    assert (usage.total_bytes, usage.free_bytes) == (10000, 7000)
    assert space_usage(parse_multistatus(NGINX_LISTING)) is None


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol">]>'
        b'<D:multistatus xmlns:D="DAV:">&lol;</D:multistatus>',
        b"<html><body>502 Bad Gateway</body></html>",
        b"not xml at all",
        b"",
    ],
)
def test_parse_refuses_what_is_not_a_plain_multistatus(body: bytes) -> None:
    with pytest.raises(DavParseError):
        parse_multistatus(body)


@pytest.mark.parametrize(
    ("path", "base", "expected"),
    [
        ("/se/belle/a.root", "/se", "/belle/a.root"),
        ("/se/belle/", "/se/", "/belle"),
        ("/se", "/se", None),
        ("/sex/belle", "/se", None),
        ("/belle/a", "", "/belle/a"),
    ],
)
def test_relative_lfn(path: str, base: str, expected: str | None) -> None:
    assert relative_lfn(path, base) == expected
