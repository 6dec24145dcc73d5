from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wrapper.proctree import kill_tree
from wrapper.watchdog import (
    Limits,
    Sample,
    TreeSampler,
    check_cpu_time,
    check_disk,
    check_looping,
    check_memory,
    check_stalled,
    check_wall_clock,
    first_violation,
    newest_write,
    parent_gone,
    write_heartbeat_file,
)

MB = 1024 * 1024


def sample(
    wall: float = 100.0,
    cpu: float = 90.0,
    rss_mb: int = 100,
    disk_mb: int = 10_000,
    quiet: float = 0.0,
) -> Sample:
    return Sample(
        wall_seconds=wall,
        cpu_seconds=cpu,
        rss_bytes=rss_mb * MB,
        disk_free_bytes=disk_mb * MB,
        quiet_seconds=quiet,
    )


def test_limits_from_job_spec() -> None:
    limits = Limits.for_job(
        cpu_time=1000, max_ram_mb=2000, wall_limit=None, min_disk_free_mb=50, stalled_grace=60
    )
    assert limits.cpu_seconds == pytest.approx(1200)
    assert limits.rss_bytes == 2000 * MB
    assert limits.wall_seconds is None
    assert limits.min_disk_free_bytes == 50 * MB
    unset = Limits.for_job(
        cpu_time=0, max_ram_mb=0, wall_limit=30, min_disk_free_mb=0, stalled_grace=60
    )
    assert unset.cpu_seconds is None
    assert unset.rss_bytes is None
    assert unset.wall_seconds == 30


def test_wall_clock() -> None:
    assert check_wall_clock(sample(wall=100), Limits(wall_seconds=100)) is None
    reason = check_wall_clock(sample(wall=101), Limits(wall_seconds=100))
    assert reason is not None
    assert "wall clock" in reason
    assert check_wall_clock(sample(wall=1e9), Limits()) is None


def test_cpu_time_has_margin_over_request() -> None:
    limits = Limits.for_job(
        cpu_time=100, max_ram_mb=0, wall_limit=None, min_disk_free_mb=0, stalled_grace=1
    )
    assert check_cpu_time(sample(cpu=119), limits) is None
    reason = check_cpu_time(sample(cpu=121), limits)
    assert reason is not None
    assert "CPU time" in reason


def test_memory() -> None:
    limits = Limits(rss_bytes=500 * MB)
    assert check_memory(sample(rss_mb=500), limits) is None
    reason = check_memory(sample(rss_mb=501), limits)
    assert reason is not None
    assert "memory" in reason
    assert check_memory(sample(rss_mb=10**6), Limits()) is None


def test_disk() -> None:
    limits = Limits(min_disk_free_bytes=100 * MB)
    assert check_disk(sample(disk_mb=100), limits) is None
    reason = check_disk(sample(disk_mb=99), limits)
    assert reason is not None
    assert "disk" in reason


def test_stalled_only_after_grace() -> None:
    limits = Limits(stalled_grace_seconds=1800)
    assert check_stalled(sample(wall=1799, cpu=0), limits) is None
    reason = check_stalled(sample(wall=1800, cpu=10), limits)
    assert reason is not None
    assert "stalled" in reason
    assert check_stalled(sample(wall=1800, cpu=1800 * 0.05), limits) is None
    assert check_stalled(sample(wall=0, cpu=0), Limits(stalled_grace_seconds=0)) is None


def test_looping_only_with_a_limit() -> None:
    limits = Limits.for_job(
        cpu_time=0,
        max_ram_mb=0,
        wall_limit=None,
        min_disk_free_mb=0,
        stalled_grace=60,
        looping_limit=7200,
    )
    assert check_looping(sample(quiet=7200), limits) is None
    reason = check_looping(sample(quiet=7201), limits)
    assert reason is not None
    assert reason.startswith("payload looping: no file written for 7201 s")
    unset = Limits.for_job(
        cpu_time=0, max_ram_mb=0, wall_limit=None, min_disk_free_mb=0, stalled_grace=60
    )
    assert unset.looping_seconds is None
    assert check_looping(sample(quiet=1e9), unset) is None


def test_newest_write_sees_nested_and_watched_files(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "a" / "b").mkdir(parents=True)
    assert newest_write(work) == 0.0
    old, nested, log = work / "old.root", work / "a" / "b" / "new.root", tmp_path / "payload.log"
    for path, mtime in ((old, 1_000_000.0), (nested, 2_000_000.0), (log, 3_000_000.0)):
        path.write_text("x")
        os.utime(path, (mtime, mtime))
    assert newest_write(work) == 2_000_000.0
    assert newest_write(work, [log, tmp_path / "missing"]) == 3_000_000.0


def test_tree_sampler_quiet_time_follows_writes(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = TreeSampler(proc.pid, tmp_path, looping_seconds=1.0)
        time.sleep(0.6)
        assert sampler.sample().quiet_seconds >= 0.5  # nothing written since the start
        (tmp_path / "progress.txt").write_text("event 1")
        written = time.monotonic()
        time.sleep(0.5)
        later = sampler.sample()
        # Quiet since the write, not since the start.
        assert later.quiet_seconds < later.wall_seconds - 0.5
        assert later.quiet_seconds == pytest.approx(time.monotonic() - written, abs=0.3)
        # Without a looping limit nothing is scanned.
        assert TreeSampler(proc.pid, tmp_path).sample().quiet_seconds == 0.0
    finally:
        kill_tree(proc, grace=2)


def test_first_violation_order_and_none() -> None:
    limits = Limits(wall_seconds=10, rss_bytes=MB)
    reason = first_violation(sample(wall=20, rss_mb=5), limits)
    assert reason is not None
    assert reason.startswith("wall clock")
    assert first_violation(sample(wall=5, cpu=5, rss_mb=1), limits) is None


def test_parent_gone() -> None:
    assert not parent_gone(100, 100)
    assert parent_gone(100, 1)


def test_tree_sampler_counts_children(tmp_path: Path) -> None:
    # A parent whose child burns CPU and holds memory: both must show in the tree totals.
    child = (
        "import time\n"
        "b = bytearray(60 * 1024 * 1024)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "end = time.time() + 20\n"
        "while time.time() < end: pass\n"
    )
    code = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); "
        "time.sleep(20)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        sampler = TreeSampler(proc.pid, tmp_path)
        deadline = time.monotonic() + 10
        s = sampler.sample()
        while time.monotonic() < deadline and (s.rss_bytes < 60 * MB or s.cpu_seconds < 0.5):
            time.sleep(0.1)
            s = sampler.sample()
        assert s.rss_bytes >= 60 * MB
        assert s.cpu_seconds >= 0.5
        assert s.disk_free_bytes > 0
        assert s.wall_seconds > 0
    finally:
        kill_tree(proc, grace=2)


def test_heartbeat_file(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    write_heartbeat_file(path, sample(wall=3, cpu=2, rss_mb=1, disk_mb=2))
    data = json.loads(path.read_text())
    assert data["wall_seconds"] == 3
    assert data["rss_bytes"] == MB
    assert data["time_unix"] > 0
