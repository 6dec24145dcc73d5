"""The root:// plugin against real xrootd servers (tests/support/xrootd.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes, adler32_of_file
from tests.support.xrootd import XrootdServer, free_port, running_xrootd
from tests.wrapper.se.conformance import StorageConformance
from wrapper.se import (
    SEFileNotFoundError,
    SEUnavailableError,
    StorageError,
    open_storage,
)
from wrapper.se.xrootd import XrootdPlugin

LFN = "/belle/user/alice/p1/sub00/out_1_1.root"
MIB = 1024 * 1024
CHUNK = 4 * MIB  # the plugin's transfer chunk
# Generous: with the plugin's client settings a dead SE fails in milliseconds (refused) or
# about 3 s (a listener that never answers); XrdCl's defaults take 15 s and more.
FAIL_FAST = 10.0


@pytest.fixture(scope="module")
def server() -> Iterator[XrootdServer]:
    with running_xrootd(name="test-se") as se:
        yield se


@pytest.fixture
def storage(server: XrootdServer) -> Iterator[XrootdPlugin]:
    plugin = open_storage(server.url)
    assert isinstance(plugin, XrootdPlugin)
    yield plugin
    plugin.close()


def local_file(directory: Path, data: bytes, name: str = "data.root") -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def corrupt_keeping_mtime(path: Path) -> None:
    """Flip one byte of a stored file behind the server's back, as a failing disk does."""
    info = path.stat()
    with path.open("r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def part_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*.part")) if directory.exists() else []


class TestXrootdConformance(StorageConformance):
    # `storage` is the module's fixture: the plugin on the shared server.

    @pytest.fixture
    def unreachable_storage(self) -> XrootdPlugin:
        return XrootdPlugin(f"root://127.0.0.1:{free_port()}//nobody-se")


def test_url_maps_lfn_below_base_path(storage: XrootdPlugin, server: XrootdServer) -> None:
    assert storage.url_for(LFN) == f"root://127.0.0.1:{server.port}//test-se{LFN}"
    assert storage.base_path == "/test-se"


@pytest.mark.parametrize("url", ["root:///no-host", "root://host:1094//se?authz=x"])
def test_malformed_url_refused(url: str) -> None:
    with pytest.raises(StorageError, match="root SE URL"):
        XrootdPlugin(url)


def test_upload_lands_under_final_name_only(
    storage: XrootdPlugin, server: XrootdServer, tmp_path: Path
) -> None:
    data = os.urandom(5 * MIB)
    storage.upload(local_file(tmp_path, data), LFN)
    stored = server.data_path(LFN)
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]


def test_checksum_is_the_servers_record(
    storage: XrootdPlugin, server: XrootdServer, tmp_path: Path
) -> None:
    """The server's recorded adler32 (xrootd.chksum; kept in an xattr, valid while the
    mtime is unchanged) is what checksum() returns: corrupting the file behind the server's
    back without touching its mtime leaves the answer at the uploaded value, as a catalogue
    checksum would; only reading the file shows the damage."""
    data = os.urandom(MIB + 5)
    lfn = "/belle/cks/recorded.root"
    storage.upload(local_file(tmp_path, data), lfn)
    assert storage.checksum(lfn) == adler32_of_bytes(data)
    stored = server.data_path(lfn)
    assert any("XrdCks" in name for name in os.listxattr(stored))

    corrupt_keeping_mtime(stored)
    assert storage.checksum(lfn) == adler32_of_bytes(data)
    storage.download(lfn, tmp_path / "back")
    damaged = adler32_of_file(tmp_path / "back")
    assert damaged != adler32_of_bytes(data)

    # A newer mtime (the record holds whole seconds) invalidates it: the server reads again.
    info = stored.stat()
    os.utime(stored, (info.st_atime, info.st_mtime + 10))
    assert storage.checksum(lfn) == damaged


def test_checksum_computed_when_server_offers_none(tmp_path: Path) -> None:
    with running_xrootd(name="nocks-se", checksum=False) as bare:
        storage = open_storage(bare.url)
        data = os.urandom(MIB + 7)
        storage.upload(local_file(tmp_path, data), LFN)
        assert storage.checksum(LFN) == adler32_of_bytes(data)
        # Read from the file every time: the damage shows at once.
        corrupt_keeping_mtime(bare.data_path(LFN))
        assert storage.checksum(LFN) == adler32_of_file(bare.data_path(LFN))
        assert storage.checksum(LFN) != adler32_of_bytes(data)
        with pytest.raises(SEFileNotFoundError):
            storage.checksum("/belle/absent.root")


def test_directory_is_not_a_file(storage: XrootdPlugin, tmp_path: Path) -> None:
    storage.upload(local_file(tmp_path, b"x"), "/belle/dir/f.root")
    for call in (storage.stat, storage.checksum):
        with pytest.raises(SEFileNotFoundError, match="is a directory"):
            call("/belle/dir")
    with pytest.raises(SEFileNotFoundError, match="is a directory"):
        storage.download("/belle/dir", tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_list_skips_partial_uploads(
    storage: XrootdPlugin, server: XrootdServer, tmp_path: Path
) -> None:
    lfns = ["/belle/listing/sub00/b.root", "/belle/listing/sub00/a.root", "/belle/listing/c"]
    for lfn in lfns:
        storage.upload(local_file(tmp_path, b"x"), lfn)
    partial = server.data_path("/belle/listing/sub00/.gridpilot-0123.part")
    partial.write_bytes(b"half")
    assert storage.list("/belle/listing") == sorted(lfns)
    with pytest.raises(StorageError, match="invalid LPN"):
        storage.list("/belle/../etc")


def test_space_of_a_small_se_drops_as_it_fills(tmp_path: Path) -> None:
    """A 2 MiB tmpfs behind the server: `query space` reports it, an upload of 1.5 MiB
    takes that much, and one that does not fit is refused with nothing left behind."""
    with running_xrootd(name="small-se", size_limit_bytes=2 * MIB) as small:
        storage = open_storage(small.url)
        empty = storage.space()
        assert empty.total_bytes == 2 * MIB
        assert empty.free_bytes > 1.9 * MIB

        storage.upload(local_file(tmp_path, os.urandom(3 * MIB // 2)), LFN)
        after = storage.space()
        assert after.total_bytes == 2 * MIB
        assert after.free_bytes <= empty.free_bytes - 3 * MIB // 2
        assert after.used_fraction > 0.7

        # The last 0.5 MiB cannot hold another 1.5 MiB: refused, as a full SE is.
        second = "/belle/user/alice/p1/sub00/out_2_1.root"
        with pytest.raises(SEUnavailableError, match=r"no space|stored") as info:
            storage.upload(local_file(tmp_path, os.urandom(3 * MIB // 2), "two"), second)
        assert small.url in str(info.value)
        assert second in str(info.value)
        assert not small.data_path(second).exists()
        assert part_files(small.data_dir) == []
        assert storage.list("/belle") == [LFN]
        assert storage.space().free_bytes == after.free_bytes


def test_server_stopped_mid_upload_then_back(tmp_path: Path) -> None:
    """The SE goes down while an upload streams into it: SEUnavailableError, nothing under
    the final name; once it is back the same plugin works again, and the server has dropped
    the unfinished temporary file (POSC)."""
    with running_xrootd(name="flaky-se") as flaky:
        storage = open_storage(flaky.url)
        fifo = tmp_path / "stream.root"
        os.mkfifo(fifo)
        failure: list[BaseException] = []

        def upload() -> None:
            try:
                storage.upload(fifo, LFN)
            except BaseException as exc:  # handed over to the test's thread
                failure.append(exc)

        uploader = threading.Thread(target=upload)
        uploader.start()
        directory = flaky.data_path(LFN).parent
        with fifo.open("wb", buffering=0) as writer:
            writer.write(os.urandom(CHUNK))  # one whole chunk reaches the server
            deadline = time.monotonic() + 10
            while sum(p.stat().st_size for p in directory.glob("*.part")) < CHUNK:
                assert time.monotonic() < deadline, "the upload never reached the server"
                time.sleep(0.02)
            flaky.stop()
            # The upload fails at its next write, or already at this one's reply.
            with contextlib.suppress(BrokenPipeError):
                writer.write(os.urandom(MIB))
        uploader.join(timeout=30)
        assert not uploader.is_alive()

        assert len(failure) == 1
        assert isinstance(failure[0], SEUnavailableError), failure
        assert flaky.url in str(failure[0])
        assert LFN in str(failure[0])
        assert not flaky.data_path(LFN).exists()
        for call in (storage.stat, storage.checksum, storage.list):
            with pytest.raises(SEUnavailableError):
                call(LFN)
        with pytest.raises(SEUnavailableError):
            storage.download(LFN, tmp_path / "back")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["stream.root"]
        # The plugin could not remove its temporary file from a dead server...
        assert len(part_files(flaky.data_dir)) == 1

        flaky.start()
        # ...which drops it as an unfinished POSC file when it starts again.
        assert part_files(flaky.data_dir) == []
        with pytest.raises(SEFileNotFoundError):
            storage.stat(LFN)
        storage.upload(local_file(tmp_path, b"second try"), LFN)
        assert storage.checksum(LFN) == adler32_of_bytes(b"second try")


def test_failed_download_keeps_old_local_file(storage: XrootdPlugin, tmp_path: Path) -> None:
    """A download that fails part-way (here the local disk fills after the first chunk)
    leaves neither a temporary file nor a truncated file under the final name."""
    storage.upload(local_file(tmp_path, os.urandom(6 * MIB)), LFN)
    small = tmp_path / "small-disk"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "gp-test", small], check=True)
    try:
        local_file(small, b"previous", "out.root")
        with pytest.raises(StorageError, match="cannot write") as info:
            storage.download(LFN, small / "out.root")
        assert not isinstance(info.value, SEUnavailableError)
        assert [p.name for p in small.iterdir()] == ["out.root"]
        assert (small / "out.root").read_bytes() == b"previous"
    finally:
        subprocess.run(["umount", small], check=True)


def test_missing_local_file_on_upload(storage: XrootdPlugin, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        storage.upload(tmp_path / "absent", LFN + ".x")


def test_dead_server_fails_fast(tmp_path: Path) -> None:
    """A wrapper stuck on a dead SE would miss its failover: every operation against a port
    where nothing listens must fail with SEUnavailableError within seconds, and a listener
    that accepts but never speaks (a hung server) within the connection window. The bound
    is generous (measured: milliseconds and ~3 s); XrdCl's defaults need 15 s or more."""
    dead = XrootdPlugin(f"root://127.0.0.1:{free_port()}//dead-se")
    local = local_file(tmp_path, b"x")
    calls = {
        "upload": lambda: dead.upload(local, LFN),
        "download": lambda: dead.download(LFN, tmp_path / "y"),
        "stat": lambda: dead.stat(LFN),
        "checksum": lambda: dead.checksum(LFN),
        "delete": lambda: dead.delete(LFN),
        "list": lambda: dead.list("/belle"),
        "space": dead.space,
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(SEUnavailableError, match="dead-se"):
            call()
        assert time.monotonic() - started < FAIL_FAST, name

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hung = XrootdPlugin(f"root://127.0.0.1:{silent.getsockname()[1]}//hung-se")
        started = time.monotonic()
        with pytest.raises(SEUnavailableError, match="hung-se"):
            hung.stat(LFN)
        assert time.monotonic() - started < FAIL_FAST


def test_client_settings_yield_to_the_environment() -> None:
    """The plugin's connection settings are defaults: XRD_* variables a site sets win."""
    probe = (
        "import wrapper.se.xrootd; from XRootD import client; "
        "print(client.EnvGetInt('ConnectionRetry'), client.EnvGetInt('StreamErrorWindow'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRD_")}
    plain = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert plain.stdout.split() == ["1", "0"]
    site = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "XRD_CONNECTIONRETRY": "3"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert site.stdout.split() == ["3", "0"]
