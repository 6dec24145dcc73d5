"""One matched job on this node: its directory, its wrapper process, its measurements.

The pilot reaps the wrapper itself (pidfd + wait4) instead of through asyncio's child
watcher: wait4 hands back the rusage of the wrapper and every descendant it waited for,
the exact CPU of the attempt even when the last heartbeat sample missed a short step.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gridpilot.channel import write_token_file
from gridpilot.logs import get_logger
from gridpilot.v1 import pilots_pb2
from pilot.logtail import tail_lines
from pilot.node import disk_free_bytes
from pilot.proctree import TreeSample, kill_tree, sample_tree

log = get_logger(__name__)

JOB_FILE = "job.pb"
# The job token central issued with the match: the wrapper's only credential.
JOB_TOKEN_FILE = "job.token"
WRAPPER_LOG = "wrapper.log"
PAYLOAD_LOG = "payload.log"
REPORT_DONE = "report.done"
STDOUT_TAIL_LINES = 20

# The directory holding the `pilot` package: wrappers import from the same code base even
# when the pilot was started from elsewhere (a bundle unpacked on the worker node).
_CODE_ROOT = str(Path(__file__).resolve().parent.parent)


class JobStartError(RuntimeError):
    """The job directory or the wrapper process could not be created."""


@dataclass(frozen=True)
class WrapperSettings:
    """What every wrapper this pilot starts is told (see docs/architecture.md)."""

    central: str
    site: str
    software_setup: str | None = None
    python: str = sys.executable
    module: str = "wrapper"
    extra_env: dict[str, str] = field(default_factory=dict)
    # How the wrapper verifies central (None + insecure: plaintext).
    ca: Path | None = None
    insecure: bool = False

    def command(self, job_dir: Path, wall_limit: float | None) -> list[str]:
        argv = [self.python, "-m", self.module, "--central", self.central]
        argv += ["--job-dir", str(job_dir), "--site", self.site]
        # The token travels in a private file, never on the command line (ps shows argv).
        argv += ["--token-file", str(job_dir / JOB_TOKEN_FILE)]
        if self.insecure:
            argv.append("--insecure")
        elif self.ca is not None:
            argv += ["--ca", str(self.ca)]
        if self.software_setup:
            argv += ["--software-setup", self.software_setup]
        # Whole seconds, and only a positive limit: the wrapper refuses 0.
        if wall_limit is not None and int(wall_limit) >= 1:
            argv += ["--wall-limit", str(int(wall_limit))]
        return argv


def job_dir_name(job_id: int, attempt: int) -> str:
    return f"job_{job_id}_{attempt}"


def _prepare_dir(work_dir: Path, job_id: int, attempt: int) -> Path:
    job_dir = work_dir / job_dir_name(job_id, attempt)
    if job_dir.exists():
        # A leftover of an earlier pilot on this work dir: its report.done must not be
        # mistaken for this attempt's, and its files are evidence worth keeping.
        aside = job_dir.with_name(f"{job_dir.name}.old-{int(time.time())}")
        job_dir.rename(aside)
        log.warning("job.dir_moved_aside", job_id=job_id, attempt=attempt, to=str(aside))
    job_dir.mkdir(parents=True, mode=0o700)
    return job_dir


def _reap(pid: int, *, block: bool) -> tuple[int, resource.struct_rusage] | None:
    """wait4 on our child: (wait status, rusage), or None if it still runs (block=False)."""
    reaped, status, usage = os.wait4(pid, 0 if block else os.WNOHANG)
    return (status, usage) if reaped else None


class RunningJob:
    """A wrapper process started for one matched job attempt."""

    def __init__(
        self,
        matched: pilots_pb2.MatchedJob,
        job_dir: Path,
        process: subprocess.Popen[bytes],
        cores: int,
        memory_mb: int,
    ) -> None:
        self.matched = matched
        self.job_id = matched.job_id
        self.attempt = matched.attempt
        self.job_dir = job_dir
        self.cores = cores
        self.memory_mb = memory_mb
        self.pid = process.pid
        self._process = process
        self._started = time.monotonic()
        self._cpu_seen = 0.0
        self._rss = 0
        self.returncode: int | None = None
        # Set by the pilot when it kills the job, to report why instead of a wrapper error.
        self.kill_reason: str | None = None
        self.terminated_by: str | None = None
        self._kill_task: asyncio.Task[list[int]] | None = None

    @classmethod
    def start(
        cls,
        matched: pilots_pb2.MatchedJob,
        work_dir: Path,
        settings: WrapperSettings,
        *,
        cores: int,
        memory_mb: int,
        wall_limit: float | None = None,
        pilot_id: str = "",
    ) -> RunningJob:
        """Create the job directory, write job.pb and start the wrapper in its own session."""
        try:
            job_dir = _prepare_dir(work_dir, matched.job_id, matched.attempt)
            write_token_file(job_dir / JOB_TOKEN_FILE, matched.job_token)
            # job.pb without the token: the token's one copy on disk is the private job.token.
            described = pilots_pb2.MatchedJob()
            described.CopyFrom(matched)
            described.ClearField("job_token")
            (job_dir / JOB_FILE).write_bytes(described.SerializeToString())
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (_CODE_ROOT, env.get("PYTHONPATH", "")) if p
            )
            env["GRIDPILOT_PILOT_ID"] = pilot_id
            env["GRIDPILOT_JOB_ID"] = str(matched.job_id)
            env.update(settings.extra_env)
            argv = settings.command(job_dir, wall_limit)
            with (job_dir / WRAPPER_LOG).open("wb") as wrapper_log:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=wrapper_log,
                    stderr=subprocess.STDOUT,
                    cwd=job_dir,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            raise JobStartError(
                f"cannot start wrapper for job {matched.job_id} attempt {matched.attempt}: {exc}"
            ) from exc
        log.info(
            "job.started",
            pilot_id=pilot_id,
            job_id=matched.job_id,
            attempt=matched.attempt,
            pid=process.pid,
            job_dir=str(job_dir),
        )
        return cls(matched, job_dir, process, cores, memory_mb)

    @property
    def wall_seconds(self) -> float:
        return time.monotonic() - self._started

    @property
    def cpu_seconds(self) -> float:
        return self._cpu_seen

    @property
    def running(self) -> bool:
        return self.returncode is None

    def report_done(self) -> bool:
        return (self.job_dir / REPORT_DONE).exists()

    def wrapper_log_tail(self, lines: int = 20) -> list[str]:
        return tail_lines(self.job_dir / WRAPPER_LOG, lines)

    def measure(self, members: list[int] | None = None) -> TreeSample:
        """Sample the process tree; CPU never goes down between samples (an orphan that
        was reparented away takes its CPU with it, but it was consumed all the same)."""
        sample = sample_tree(self.pid, self.pid, members)
        self._cpu_seen = max(self._cpu_seen, sample.cpu_seconds)
        # Once the job's processes are gone (the wrapper exited, reaped or not), its memory
        # is what it was last seen using, not nothing.
        if sample.processes:
            self._rss = sample.rss_bytes
        return sample

    def heartbeat(self, load: float, members: list[int] | None = None) -> pilots_pb2.JobHeartbeat:
        self.measure(members)
        try:
            disk = disk_free_bytes(self.job_dir)
        except OSError:
            disk = 0
        return pilots_pb2.JobHeartbeat(
            job_id=self.job_id,
            attempt=self.attempt,
            cpu_seconds=self._cpu_seen,
            wall_seconds=self.wall_seconds,
            rss_bytes=self._rss,
            disk_free_bytes=disk,
            load_average=load,
            stdout_tail=tail_lines(self.job_dir / PAYLOAD_LOG, STDOUT_TAIL_LINES),
        )

    async def wait(self) -> int:
        """Wait for the wrapper to exit and reap it; returns its returncode."""
        if self.returncode is not None:
            return self.returncode
        try:
            pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): poll instead
            pidfd = None
        if pidfd is not None:
            loop = asyncio.get_running_loop()
            readable = loop.create_future()

            def on_exit() -> None:
                if not readable.done():
                    readable.set_result(None)

            loop.add_reader(pidfd, on_exit)
            try:
                await readable
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
            reaped = _reap(self.pid, block=True)
            assert reaped is not None
        else:
            # A thread blocked in wait4, as asyncio's own ThreadedChildWatcher does.
            reaped = await asyncio.to_thread(_reap, self.pid, block=True)
            assert reaped is not None
        status, usage = reaped
        self.returncode = os.waitstatus_to_exitcode(status)
        # Tell Popen it is reaped, so it never waits on a pid that may be reused.
        self._process.returncode = self.returncode
        self._cpu_seen = max(self._cpu_seen, usage.ru_utime + usage.ru_stime)
        return self.returncode

    @property
    def kill_task(self) -> asyncio.Task[list[int]] | None:
        return self._kill_task

    def kill(self, grace: float) -> asyncio.Task[list[int]]:
        """Kill the wrapper's whole tree (SIGTERM, then SIGKILL after `grace`); idempotent."""
        if self._kill_task is None:
            self._kill_task = asyncio.get_running_loop().create_task(
                kill_tree(self.pid, self.pid, grace=grace)
            )
        return self._kill_task

    async def reap_leftovers(self, grace: float) -> None:
        """After the wrapper exited: kill whatever it left behind in its session."""
        # The wrapper is reaped, so its pid may be reused: only its session is searched.
        leftovers = sample_tree(None, self.pid).processes
        if leftovers:
            log.warning("job.leftover_processes", job_id=self.job_id, count=leftovers)
            await kill_tree(None, self.pid, grace=grace)
