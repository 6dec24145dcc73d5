"""Worker-node checks and the node's description, measured with psutil.

A pilot that lands on a broken node (full disk, unwritable work dir, no memory) must say so
and stop before it pulls a job: a job matched to a bad node fails and burns an attempt.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from gridpilot.logs import get_logger

log = get_logger(__name__)

MIB = 1024 * 1024

# Families whose binaries are interchangeable across rebuilds: one platform name per major.
_EL_IDS = frozenset({"rhel", "centos", "rocky", "almalinux", "ol", "scientific"})


class NodeCheckError(RuntimeError):
    """The node cannot host jobs; the message lists every failed check."""


@dataclass(frozen=True)
class NodeLimits:
    """Minimums a node must meet before the pilot registers."""

    min_disk_free_mb: int = 1024
    min_memory_mb: int = 512
    # None: a high load only warns (batch systems oversubscribe on purpose at times).
    max_load_per_core: float | None = None


@dataclass(frozen=True)
class NodeInfo:
    hostname: str
    cores: int
    memory_bytes: int
    disk_free_bytes: int
    load_average: float
    platform: str
    python_version: str
    warnings: tuple[str, ...] = field(default=())


def usable_cores() -> int:
    """Cores this process may run on (the batch system's affinity mask, not the whole host)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, psutil.cpu_count(logical=True) or 1)


def _cgroup_memory_limit() -> int | None:
    # cgroup v2 first, then v1; batch systems confine slots this way.
    for path in (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def usable_memory_bytes() -> int:
    """Physical memory, reduced to the cgroup limit when one is set and smaller."""
    total = int(psutil.virtual_memory().total)
    limit = _cgroup_memory_limit()
    return min(total, limit) if limit else total


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of an os-release file, quotes removed."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip("'\"")
    return fields


def platform_name(os_release: dict[str, str], machine: str) -> str:
    """E.g. "x86_64-debian12", "x86_64-el9" (any RHEL rebuild), "aarch64-ubuntu22"."""
    os_id = os_release.get("ID", "").lower()
    like = os_release.get("ID_LIKE", "").lower().split()
    major = os_release.get("VERSION_ID", "").split(".")[0]
    if os_id in _EL_IDS or ("rhel" in like and os_id != "fedora"):
        os_id = "el"
    if not os_id:
        os_id = platform.system().lower() or "unknown"
    return f"{machine}-{os_id}{major}"


def detect_platform(os_release_path: Path = Path("/etc/os-release")) -> str:
    try:
        fields = parse_os_release(os_release_path.read_text())
    except OSError:
        fields = {}
    return platform_name(fields, platform.machine() or "unknown")


def disk_free_bytes(path: Path) -> int:
    return int(shutil.disk_usage(path).free)


def load_average() -> float:
    return float(os.getloadavg()[0])


def _check_writable(work_dir: Path) -> str | None:
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix=".pilot-check-"):
            pass
    except OSError as exc:
        return f"work dir {work_dir} is not writable: {exc}"
    return None


def check_node(work_dir: Path, limits: NodeLimits | None = None) -> NodeInfo:
    """Measure the node and check it against `limits`; raise NodeCheckError listing failures."""
    limits = limits or NodeLimits()
    problems: list[str] = []
    warnings: list[str] = []
    unwritable = _check_writable(work_dir)
    if unwritable:
        raise NodeCheckError(unwritable)
    cores = usable_cores()
    memory = usable_memory_bytes()
    disk = disk_free_bytes(work_dir)
    load = load_average()
    if disk < limits.min_disk_free_mb * MIB:
        problems.append(
            f"only {disk // MIB} MiB free in {work_dir} (need {limits.min_disk_free_mb} MiB)"
        )
    if memory < limits.min_memory_mb * MIB:
        problems.append(f"only {memory // MIB} MiB memory (need {limits.min_memory_mb} MiB)")
    per_core = load / cores
    if limits.max_load_per_core is not None and per_core > limits.max_load_per_core:
        problems.append(
            f"load {load:.2f} on {cores} cores exceeds {limits.max_load_per_core} per core"
        )
    elif per_core > 2.0:
        warnings.append(f"high load {load:.2f} on {cores} cores")
    if problems:
        raise NodeCheckError("node check failed: " + "; ".join(problems))
    info = NodeInfo(
        # gethostname, not getfqdn: a DNS lookup can hang on a badly configured node.
        hostname=socket.gethostname(),
        cores=cores,
        memory_bytes=memory,
        disk_free_bytes=disk,
        load_average=load,
        platform=detect_platform(),
        python_version=platform.python_version(),
        warnings=tuple(warnings),
    )
    for warning in warnings:
        log.warning("node.warning", detail=warning)
    log.info(
        "node.checked",
        hostname=info.hostname,
        cores=cores,
        memory_mb=memory // MIB,
        disk_free_mb=disk // MIB,
        load=round(load, 2),
        platform=info.platform,
    )
    return info
