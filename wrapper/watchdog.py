"""The payload watchdog: limits, one pure function per check, and process-tree sampling.

Checks follow DIRAC's Watchdog and Pilot3: wall clock, CPU time (+20% over the request),
memory (RSS of the whole process tree), free disk in the work directory, a stalled payload
(CPU/wall below 5% once a grace period has passed) and a looping one (Pilot3's looping job: no
file in the work directory, nor the payload's log, written for the looping limit -- a payload
spinning in a loop burns CPU, so the stall check does not see it). Each check takes a `Sample`
and the `Limits` and returns a reason when the payload must be killed, else None.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from gridpilot.logs import get_logger

log = get_logger(__name__)

# DIRAC's margin over the CPU time the user asked for.
CPU_TIME_MARGIN = 1.2
STALLED_MIN_RATIO = 0.05
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    rss_bytes: int | None = None
    min_disk_free_bytes: int = 0
    stalled_grace_seconds: float = 1800.0
    stalled_min_ratio: float = STALLED_MIN_RATIO
    looping_seconds: float | None = None

    @classmethod
    def for_job(
        cls,
        *,
        cpu_time: int,
        max_ram_mb: int,
        wall_limit: float | None,
        min_disk_free_mb: int,
        stalled_grace: float,
        looping_limit: float = 0.0,
    ) -> Limits:
        """Limits from the job spec and the wrapper's options (0 = not set)."""
        return cls(
            wall_seconds=wall_limit,
            cpu_seconds=cpu_time * CPU_TIME_MARGIN if cpu_time > 0 else None,
            rss_bytes=max_ram_mb * _MB if max_ram_mb > 0 else None,
            min_disk_free_bytes=min_disk_free_mb * _MB,
            stalled_grace_seconds=stalled_grace,
            looping_seconds=looping_limit if looping_limit > 0 else None,
        )


@dataclass(frozen=True)
class Sample:
    """The payload's resource use at one moment (process tree totals)."""

    wall_seconds: float
    cpu_seconds: float
    rss_bytes: int
    disk_free_bytes: int
    # Since the payload last wrote a file it is watched for (or started, if it has not yet).
    quiet_seconds: float = 0.0


def check_wall_clock(sample: Sample, limits: Limits) -> str | None:
    if limits.wall_seconds is not None and sample.wall_seconds > limits.wall_seconds:
        return (
            f"wall clock limit exceeded: {sample.wall_seconds:.0f} s > {limits.wall_seconds:.0f} s"
        )
    return None


def check_cpu_time(sample: Sample, limits: Limits) -> str | None:
    if limits.cpu_seconds is not None and sample.cpu_seconds > limits.cpu_seconds:
        return (
            f"CPU time limit exceeded: {sample.cpu_seconds:.0f} s > {limits.cpu_seconds:.0f} s "
            f"(requested CPU time + {CPU_TIME_MARGIN - 1:.0%})"
        )
    return None


def check_memory(sample: Sample, limits: Limits) -> str | None:
    if limits.rss_bytes is not None and sample.rss_bytes > limits.rss_bytes:
        return (
            f"memory limit exceeded: RSS {sample.rss_bytes / _MB:.0f} MB > "
            f"{limits.rss_bytes / _MB:.0f} MB"
        )
    return None


def check_disk(sample: Sample, limits: Limits) -> str | None:
    if sample.disk_free_bytes < limits.min_disk_free_bytes:
        return (
            f"disk space low: {sample.disk_free_bytes / _MB:.0f} MB free < "
            f"{limits.min_disk_free_bytes / _MB:.0f} MB"
        )
    return None


def check_stalled(sample: Sample, limits: Limits) -> str | None:
    if sample.wall_seconds < limits.stalled_grace_seconds or sample.wall_seconds <= 0:
        return None
    ratio = sample.cpu_seconds / sample.wall_seconds
    if ratio < limits.stalled_min_ratio:
        return (
            f"payload stalled: CPU/wall {ratio:.1%} < {limits.stalled_min_ratio:.0%} "
            f"after {sample.wall_seconds:.0f} s"
        )
    return None


def check_looping(sample: Sample, limits: Limits) -> str | None:
    if limits.looping_seconds is not None and sample.quiet_seconds > limits.looping_seconds:
        return (
            f"payload looping: no file written for {sample.quiet_seconds:.0f} s "
            f"(limit {limits.looping_seconds:.0f} s)"
        )
    return None


CHECKS: tuple[Callable[[Sample, Limits], str | None], ...] = (
    check_wall_clock,
    check_cpu_time,
    check_memory,
    check_disk,
    check_stalled,
    check_looping,
)


def first_violation(sample: Sample, limits: Limits) -> str | None:
    """The reason of the first failing check, or None when the payload may go on."""
    for check in CHECKS:
        reason = check(sample, limits)
        if reason is not None:
            return reason
    return None


def parent_gone(original_ppid: int, current_ppid: int) -> bool:
    """True when the wrapper was re-parented: the pilot that started it has exited."""
    return current_ppid != original_ppid


# -- sampling the live process tree ---------------------------------------------------------


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_usage(root: psutil.Process) -> tuple[float, int]:
    """CPU seconds (including reaped children) and RSS bytes of `root` and its descendants."""
    cpu, rss = 0.0, 0
    for proc in _tree(root):
        try:
            times = proc.cpu_times()
            rss += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        cpu += times.user + times.system + times.children_user + times.children_system
    return cpu, rss


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def newest_write(work_dir: Path, files: Iterable[Path] = ()) -> float:
    """The latest modification time (Unix seconds) of any file below `work_dir` or of
    `files`; 0 when there is none."""
    paths = [os.path.join(root, name) for root, _, names in os.walk(work_dir) for name in names]
    paths += [str(path) for path in files]
    newest = 0.0
    for path in paths:
        try:
            newest = max(newest, os.lstat(path).st_mtime)
        except OSError:  # removed while we look
            continue
    return newest


class TreeSampler:
    """Samples a payload's process tree; CPU never goes backwards when children vanish.

    With a looping limit, the work directory and `watched` files are scanned for their newest
    write at most every quarter of the limit (Pilot3 looks every 10 minutes, for a 2 h limit),
    and once more before a sample can report the limit passed, so a file written since the
    last scan is never missed."""

    def __init__(
        self,
        pid: int,
        work_dir: Path,
        *,
        watched: Iterable[Path] = (),
        looping_seconds: float | None = None,
    ) -> None:
        self._root = psutil.Process(pid)
        self._work_dir = work_dir
        self._watched = tuple(watched)
        self._looping = looping_seconds
        self._started = time.monotonic()
        self._started_unix = time.time()
        self._max_cpu = 0.0
        self._last_write = self._started_unix
        self._last_scan = float("-inf")

    def _quiet_seconds(self) -> float:
        if self._looping is None:
            return 0.0
        now = time.monotonic()
        quiet = time.time() - self._last_write
        if now - self._last_scan >= min(self._looping / 4, 600.0) or quiet > self._looping:
            self._last_scan = now
            written = newest_write(self._work_dir, self._watched)
            self._last_write = max(self._started_unix, written)
            quiet = time.time() - self._last_write
        return max(0.0, quiet)

    def sample(self) -> Sample:
        cpu, rss = tree_usage(self._root)
        self._max_cpu = max(self._max_cpu, cpu)
        return Sample(
            wall_seconds=time.monotonic() - self._started,
            cpu_seconds=self._max_cpu,
            rss_bytes=rss,
            disk_free_bytes=disk_free(self._work_dir),
            quiet_seconds=self._quiet_seconds(),
        )


def write_heartbeat_file(path: Path, sample: Sample) -> None:
    """The latest sample as JSON, replaced atomically so a reader never sees half of it."""
    data = {"time_unix": time.time(), **asdict(sample)}
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("watchdog.heartbeat_file_failed", path=str(path), error=str(exc))
