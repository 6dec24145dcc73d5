"""Storage elements for real, end to end: three XRootD servers and one nginx WebDAV server on
127.0.0.1 are the SEs of four sites; central, directors, pilots, wrappers and the user's CLI
are real processes reading and writing them through the storage plugins.

    XRD-A   site A's own SE (xrootd)        XRD-B   site B's own SE (xrootd)
    XRD-FO  the failover SE (xrootd)        DAV-C   site C's SE (nginx WebDAV over TLS,
                                                    bearer token required)

From site A, XRD-B is near (distance 5) and DAV-C far (distance 50). Only site A runs jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridpilot.channel import write_token_file
from gridpilot.v1 import data_pb2
from tests.support.e2e_grid import (
    FAILOVER_SITE,
    OWNER,
    RELEASE,
    SITE_A,
    SITE_B,
    Grid,
    e2e_grid,
)
from tests.support.webdav import WebdavServer, running_webdav
from tests.support.xrootd import XrootdServer, running_xrootd
from wrapper.se import open_storage

pytestmark = pytest.mark.e2e

SITE_C = "GP.SITEC.test"
XRD_A, XRD_B, XRD_FO, DAV_C = "XRD-A", "XRD-B", "XRD-FO", "DAV-C"
TOKEN = "e2e-storage-token"
MB = 1_000_000


@dataclass(frozen=True)
class Servers:
    a: XrootdServer
    b: XrootdServer
    failover: XrootdServer
    dav: WebdavServer


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with (
        running_xrootd(name="xrd-a") as a,
        running_xrootd(name="xrd-b") as b,
        running_xrootd(name="xrd-fo") as failover,
        running_webdav(token=TOKEN) as dav,
    ):
        yield Servers(a, b, failover, dav)


@pytest.fixture
def se_credentials(servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a site sets in its pilots' environment (and central in its own) to read the WebDAV
    SE: its CA and a bearer token, found by WLCG token discovery. Every process the grid
    starts inherits it."""
    token_file = tmp_path / "bt"
    write_token_file(token_file, TOKEN)
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(servers.dav.ca_file))


def storage_config(servers: Servers, se_a: str | None = None) -> dict[str, Any]:
    """Central's sites, SEs and distances for these servers (`se_a`: site A's SE URL)."""
    sites = [
        {
            "name": s.name,
            "ces": [{"name": s.ce, "queues": [s.queue]}],
            "local_ses": [se],
            "default_output_se": se,
        }
        for s, se in ((SITE_A, XRD_A), (SITE_B, XRD_B))
    ]
    ses = [
        {"name": XRD_A, "site": SITE_A.name, "url": se_a or servers.a.url},
        {"name": XRD_B, "site": SITE_B.name, "url": servers.b.url},
        {"name": XRD_FO, "site": FAILOVER_SITE, "url": servers.failover.url},
        {"name": DAV_C, "site": SITE_C, "url": servers.dav.url},
    ]
    return {
        "sites": [*sites, {"name": FAILOVER_SITE}, {"name": SITE_C}],
        "storage_elements": ses,
        "distances": {SITE_A.name: {XRD_B: 5, DAV_C: 50}},
        "failover": {"ses": [XRD_FO]},
    }


def submit(grid: Grid, project: str, *args: str) -> list[int]:
    steering = grid.write_steering()
    done = grid.cli(
        "gbasf2", str(steering), "-p", project, "-s", RELEASE, "--basf2opt", "-n 5", "--force",
        *args,
    )  # fmt: skip
    assert done.code == 0, done
    return sorted(grid.statuses(project))


def wrapper_log(grid: Grid, job_id: int) -> str:
    return "\n".join(
        (job_dir / "wrapper.log").read_text(errors="replace")
        for (jid, _attempt), dirs in grid.job_dirs().items()
        if jid == job_id
        for job_dir in dirs
    )


def read_from(grid: Grid, job_id: int, lfn: str) -> str:
    """The SE the job's wrapper took `lfn` from."""
    for line in wrapper_log(grid, job_id).splitlines():
        if "stagein.done" in line and f"lfn={lfn} " in line:
            return line.split(" se=", 1)[1].split()[0]
    raise AssertionError(f"job {job_id} did not stage in {lfn}\n{grid.describe()}")


def replica_reasons(grid: Grid, lfn: str, site: str) -> list[tuple[str, str]]:
    request = data_pb2.GetReplicasRequest(lfns=[lfn], site=site)
    answer: data_pb2.GetReplicasResponse = grid.call(grid.client.data.GetReplicas, request)
    return [(r.se, r.rank_reason) for r in answer.files[0].replicas]


# ---- reading: local, nearest, next replica, bad copies -----------------------------------------


def test_jobs_read_local_then_nearest_then_next_and_report_bad_copies(
    tmp_path: Path, servers: Servers, se_credentials: None
) -> None:
    with e2e_grid(tmp_path, config=storage_config(servers)) as grid:
        # One dataset (directory) per file: each job reads one of them.
        ds = "/belle/MC/e2e/storage"
        local, near, corrupt, after_stop = (f"{ds}/{n}/f.root" for n in ("l", "n", "c", "s"))
        # The first is big enough (storage.cost_min_bytes) to teach site A a cost.
        data = {local: os.urandom(MB + 1000), near: os.urandom(200_000)}
        data[corrupt], data[after_stop] = os.urandom(210_000), os.urandom(150_000)
        grid.register_replicas(
            {
                local: ((XRD_A, XRD_B, DAV_C), data[local]),
                near: ((XRD_B, DAV_C), data[near]),
                corrupt: ((XRD_B, DAV_C), data[corrupt]),
                after_stop: ((XRD_B, DAV_C), data[after_stop]),
            }
        )
        # Behind the catalog's back: XRD-B's copy of one file rots on disk (a newer mtime, so
        # the server recomputes its checksum as a real disk error would show).
        rotten = servers.b.data_path(corrupt)
        damaged = bytearray(rotten.read_bytes())
        damaged[1000] ^= 0xFF
        rotten.write_bytes(bytes(damaged))
        os.utime(rotten, (time.time() + 5, time.time() + 5))

        jobs = {
            lfn: submit(grid, f"read{i}", "-i", lfn.rsplit("/", 1)[0])[0]
            for i, lfn in enumerate((local, near, corrupt))
        }
        grid.start_director(SITE_A, max_total=3)
        grid.wait_statuses(list(jobs.values()), {"DONE"}, timeout=90)
        assert read_from(grid, jobs[local], local) == XRD_A  # the site's own SE
        assert read_from(grid, jobs[near], near) == XRD_B  # the nearest other
        assert read_from(grid, jobs[corrupt], corrupt) == DAV_C  # the good copy
        log = wrapper_log(grid, jobs[corrupt])
        assert f"stagein.bad_replica lfn={corrupt} se={XRD_B}" in log
        # Central heard of the bad copy and confirmed it on the SE: it is read last now.
        grid.wait(
            lambda: replica_reasons(grid, corrupt, SITE_A.name)[-1][1].startswith(
                "suspect: confirmed: adler32"
            ),
            timeout=30,
            what="the bad copy to be confirmed suspect",
        )
        assert [se for se, _ in replica_reasons(grid, corrupt, SITE_A.name)] == [DAV_C, XRD_B]

        # XRD-B goes down: the next job reads the far copy instead.
        servers.b.stop()
        try:
            [job] = submit(grid, "read3", "-i", after_stop.rsplit("/", 1)[0])
            grid.wait_statuses([job], {"DONE"}, timeout=60)
            assert read_from(grid, job, after_stop) == DAV_C
            assert f"stagein.replica_failed lfn={after_stop} se={XRD_B}" in wrapper_log(grid, job)
        finally:
            servers.b.start()
        # The wrappers told central how long their transfers took: site A learned a cost.
        assert f"se.cost_learned site={SITE_A.name} se={XRD_A}" in (
            grid.central.log_path.read_text()
        )


# ---- writing: failover while the destination is down -------------------------------------------


def test_output_fails_over_while_the_destination_is_down_then_moves(
    tmp_path: Path, servers: Servers, se_credentials: None
) -> None:
    with e2e_grid(tmp_path, config=storage_config(servers)) as grid:
        [job] = submit(grid, "fo", "--repetition", "1")
        lfn = f"/belle/user/{OWNER}/fo/sub00/output_{job}_1.root"
        servers.a.stop()
        try:
            grid.start_director(SITE_A)
            grid.wait_statuses([job], {"COMPLETED"}, timeout=60)
            (output,) = grid.job(job).outputs
            assert output.se == XRD_FO
            assert grid.replicas([lfn]) == {lfn: [XRD_FO]}
            assert open_storage(servers.failover.url).stat(lfn) == output.size
            (request,) = grid.failover_requests(job)
            assert (request.source_se, request.target_se, request.status) == (
                XRD_FO,
                XRD_A,
                "Waiting",
            )
        finally:
            servers.a.start()
        # XRD-A is back: the request completes, the failover copy goes, the job is Done.
        grid.wait_statuses([job], {"DONE"}, timeout=60)
        (request,) = grid.failover_requests(job)
        assert request.status == "Done"
        assert grid.replicas([lfn]) == {lfn: [XRD_A]}
        assert open_storage(servers.a.url).checksum(lfn) == output.adler32
        assert not servers.failover.data_path(lfn).exists()


# ---- a full SE takes no new writes ---------------------------------------------------------------


def test_a_full_se_takes_no_new_writes(
    tmp_path: Path, servers: Servers, se_credentials: None
) -> None:
    """Site A's SE reports (through XRootD's space query) that it is almost full: the probes
    mark it, and the site's jobs write to the nearest SE that takes writes instead."""
    with running_xrootd(name="xrd-small", size_limit_bytes=2 * MB) as small:
        ballast = tmp_path / "ballast"
        ballast.write_bytes(os.urandom(1_950_000))
        open_storage(small.url).upload(ballast, "/ballast/fill.bin")
        probes = {"probe_period": 0.5, "probe_failures": 2, "probe_bytes": 1024}
        config = {**storage_config(servers, se_a=small.url), "storage": probes}
        with e2e_grid(tmp_path / "grid", config=config) as grid:

            def full() -> bool:
                request = data_pb2.ListStorageElementsRequest()
                answer: data_pb2.ListStorageElementsResponse = grid.call(
                    grid.client.data.ListStorageElements, request
                )
                [se] = [s for s in answer.storage_elements if s.name == XRD_A]
                return not se.writable and se.write_refusal.startswith("full: ")

            grid.wait(full, timeout=30, what="the probes to find XRD-A full")
            [job] = submit(grid, "full", "--repetition", "1")
            grid.start_director(SITE_A)
            grid.wait_statuses([job], {"DONE"}, timeout=60)
            (output,) = grid.job(job).outputs
            # Straight to the nearest writable SE: no failover, nothing parked.
            assert output.se == XRD_B
            assert grid.failover_requests(job) == []
            assert "job.output_se_redirected" in grid.central.log_path.read_text()


# ---- gb2_ds_get interrupted and restarted ------------------------------------------------------


def test_interrupted_download_resumes_without_fetching_verified_files_again(
    tmp_path: Path, servers: Servers, se_credentials: None
) -> None:
    with e2e_grid(tmp_path, config=storage_config(servers)) as grid:
        ds = f"/belle/user/{OWNER}/dl/sub00"
        files = {f"{ds}/f{i:02d}.root": ((XRD_B, DAV_C), os.urandom(MB)) for i in range(60)}
        grid.register_replicas(files)
        dest = tmp_path / "download"
        argv = [
            sys.executable, "-c",
            "import sys; from gridpilot.cli.gb2_ds import ds_get_main; sys.exit(ds_get_main())",
            ds, "-d", str(dest), "--workers", "1", "--site", SITE_B.name,
            "--central", grid.central.target,
        ]  # fmt: skip
        first = subprocess.Popen(
            argv, env=grid.user_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        landed = dest / "sub00"
        try:
            grid.wait(
                lambda: len([p for p in landed.glob("f*.root")]) >= 3,
                timeout=60,
                what="a few files downloaded",
            )
            assert first.poll() is None, "gb2_ds_get finished before it could be interrupted"
            first.send_signal(signal.SIGKILL)
        finally:
            first.wait(10)
        present = sorted(p.name for p in landed.glob("f*.root"))
        assert 3 <= len(present) < len(files)
        again = grid.cli("gb2_ds_get", ds, "-d", str(dest), "--site", SITE_B.name)
        assert again.code == 0, again
        fetched = len(files) - len(present)
        assert (
            f"{fetched} downloaded, {len(present)} skipped (already present and verified), "
            "0 failed" in again.out
        ), again.out
        for lfn, (_ses, data) in files.items():
            assert (landed / lfn.rsplit("/", 1)[1]).read_bytes() == data
        assert not list(landed.glob(".gridpilot-*"))
