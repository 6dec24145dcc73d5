"""A job's process tree: who belongs to it, what it consumes, and how to kill all of it.

Each wrapper starts in its own session (start_new_session=True), so its session id is its
pid. A job's processes are the wrapper's descendants plus every process still in that
session: a payload that double-forks a daemon loses its parent link but not its session.
Only a process that calls setsid() itself escapes both, as in every batch system.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from gridpilot.logs import get_logger

log = get_logger(__name__)

_POLL = 0.05


@dataclass(frozen=True)
class TreeSample:
    # User+system CPU of the live processes plus what they already collected from their
    # reaped children (psutil's children_user/children_system), so a finished step of the
    # payload still counts once its parent has waited for it.
    cpu_seconds: float
    rss_bytes: int
    # Live (non-zombie) processes.
    processes: int


def session_index(session_ids: Iterable[int]) -> dict[int, list[int]]:
    """Pids per session id, for the given sessions, from one scan of the process table."""
    wanted = set(session_ids)
    index: dict[int, list[int]] = {sid: [] for sid in wanted}
    if not wanted:
        return index
    for pid in psutil.pids():
        try:
            sid = os.getsid(pid)
        except OSError:  # gone in between, or not ours to ask about
            continue
        if sid in wanted:
            index[sid].append(pid)
    return index


def job_processes(
    root_pid: int | None, session_id: int | None = None, members: Iterable[int] | None = None
) -> list[psutil.Process]:
    """The root (if it still exists), its descendants and the members of `session_id`.

    Pass `root_pid=None` once the root has been reaped: its pid may belong to a stranger.

    `members` is the session's pids from a `session_index` scan shared between jobs; when
    omitted and `session_id` is given, the process table is scanned here.
    """
    found: dict[int, psutil.Process] = {}
    if root_pid is not None:
        try:
            root = psutil.Process(root_pid)
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    if members is None and session_id is not None:
        members = session_index([session_id])[session_id]
    for pid in members or ():
        if pid not in found:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
    found.pop(os.getpid(), None)
    return list(found.values())


def sample_tree(
    root_pid: int | None, session_id: int | None = None, members: Iterable[int] | None = None
) -> TreeSample:
    cpu = 0.0
    rss = 0
    count = 0
    for proc in job_processes(root_pid, session_id, members):
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system + times.children_user + times.children_system
                # A zombie has no memory and does not run (orphans may stay zombies where
                # pid 1 does not reap); its CPU above still counts until it is reaped.
                if proc.status() != psutil.STATUS_ZOMBIE:
                    rss += proc.memory_info().rss
                    count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return TreeSample(cpu_seconds=cpu, rss_bytes=rss, processes=count)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_all(procs: list[psutil.Process], pgid: int | None, sig: signal.Signals) -> None:
    signalled_group = False
    if pgid is not None and pgid != os.getpgrp():
        try:
            os.killpg(pgid, sig)
            signalled_group = True
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            # Members of the group already got it; a second SIGTERM can turn a program's
            # graceful shutdown into an abort.
            if signalled_group and os.getpgid(proc.pid) == pgid:
                continue
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            continue


async def kill_tree(
    root_pid: int | None, session_id: int | None = None, *, grace: float = 10.0
) -> list[int]:
    """SIGTERM the whole job, wait up to `grace` s, then SIGKILL what is left.

    Returns the pids that needed SIGKILL. The caller still reaps `root_pid` if it is its
    child (a zombie counts as gone here). Processes that appear during the grace period
    (a payload forking while it shuts down) are picked up before the SIGKILL.
    """
    procs = job_processes(root_pid, session_id)
    _signal_all(procs, session_id, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        procs = [p for p in procs if _alive(p)]
        if not procs:
            break
        await asyncio.sleep(_POLL)
    survivors = [p for p in job_processes(root_pid, session_id) if _alive(p)]
    if survivors:
        _signal_all(survivors, session_id, signal.SIGKILL)
    killed = [p.pid for p in survivors]
    if killed:
        log.info("job.tree_sigkilled", root_pid=root_pid, pids=",".join(map(str, killed)))
    # SIGKILL cannot be caught; give the kernel a moment so callers see them gone.
    end = time.monotonic() + 2.0
    while survivors and time.monotonic() < end:
        survivors = [p for p in survivors if _alive(p)]
        if survivors:
            await asyncio.sleep(_POLL)
    return killed
