"""The `ssh` backend: pilots on a remote host reached over SSH (asyncssh, key authentication,
host keys checked against a known_hosts file -- never optional).

Two modes:

- `direct`: pilots are processes on the remote host. Each gets `<work_dir>/pilots/<id>/`
  (0700) with `registration.token` (0600), `ca.pem` and `start.sh` (sitedirectors/
  start_script.py: verifies and unpacks the pilot bundle, then execs the pilot), uploaded
  over SFTP; the bundle goes to `<work_dir>/bundles/` once per checksum. The pilot starts
  detached from the SSH session in its own session and process group:

      cd DIR && nohup setsid sh -c 'sh start.sh >pilot.log 2>&1; echo $? >exit_code...' &

  and the launcher's PID and start time (from /proc, to tell it from a recycled PID) go to
  `process` in the pilot directory. The reference is `<host>:<pid>:<pilot_id>`. `status`
  asks about all pilots in ONE remote `sh` script (sitedirectors/ssh_scripts.py) that
  reads /proc and the pilot directories (the host needs no Python); everything is on the
  remote host, so a restarted director sees the same states. `cleanup` removes finished
  pilots' directories and, by age (`cleanup_after`), directories left over from pilots the
  director forgot.
- `slurm`: the SLURM backend (sitedirectors/slurm.py) runs `sbatch`/`squeue`/`scancel` on
  the remote login node through this connection and stages the pilots' files there over
  SFTP (sitedirectors/ssh_slurm.py). Its options (`partition`, `account`, `qos`,
  `time_limit`, `slurm_conf`, ...) sit in the same table; `work_dir` and `command_timeout`
  are the ones below.

Backend options ([queues.backend_options]):

    host = "login.example.org"
    port = 22
    user = "gridpilot"
    key_file = "/etc/gridpilot/ssh/id_ed25519"      # required
    known_hosts = "/etc/gridpilot/ssh/known_hosts"  # required
    work_dir = "gridpilot"        # on the remote host; relative = to the remote home
    mode = "direct"               # or "slurm"
    connect_timeout = 10.0
    command_timeout = 60.0
    kill_grace = 10.0             # seconds between SIGTERM and SIGKILL (direct mode)
    cleanup_after = 7.0           # days after which leftover pilot directories go
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Sequence
from typing import TypeVar

from central.models.pilot_states import PilotState
from gridpilot.logs import get_logger
from sitedirectors.base import (
    DEFAULT_LOG_CAP_BYTES,
    Backend,
    BackendContext,
    BackendError,
    BackendStatus,
    PilotLaunch,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.bundle import PilotBundle
from sitedirectors.remote import CommandError
from sitedirectors.slurm import convert_options as convert_slurm_options
from sitedirectors.ssh_options import SshOptions, convert_options, session_for
from sitedirectors.ssh_scripts import (
    CANCEL_SCRIPT,
    CLEANUP_SCRIPT,
    LAUNCH_SCRIPT,
    STATUS_SCRIPT,
    RemotePilot,
    marked_lines,
    parse_launch_output,
    parse_status_output,
)
from sitedirectors.ssh_session import SftpFiles, SshRunner, SshSession
from sitedirectors.ssh_slurm import SshSlurmBackend
from sitedirectors.staging import LOG_FILE, remove_quietly, stage_bundle, write_pilot_files
from sitedirectors.start_script import BundleOnNode

__all__ = [
    "NATIVE_STATES",
    "SshBackend",
    "SshOptions",
    "SshSlurmBackend",
    "convert_options",
    "create_ssh_backend",
    "native_state",
    "parse_reference",
    "to_status",
]

log = get_logger(__name__)

T = TypeVar("T")

# Native states (direct mode) -> the common vocabulary.
NATIVE_STATES: dict[str, PilotState] = {
    "running": PilotState.RUNNING,
    "done": PilotState.DONE,
    "failed": PilotState.FAILED,
    "cancelled": PilotState.ABORTED,
    "vanished": PilotState.ABORTED,
    "unknown": PilotState.UNKNOWN,
}

PILOTS_SUBDIR = "pilots"
BUNDLES_SUBDIR = "bundles"
BUNDLE_CACHE_SUBDIR = "bundle-cache"

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# References per remote status/cancel/cleanup command (keeps the command line short).
_BATCH = 1000


# ---- pure parsing ----------------------------------------------------------------------------


def parse_reference(reference: str) -> tuple[str, int, str]:
    """`"<host>:<pid>:<pilot_id>"` -> (host, pid, pilot_id); ValueError for anything else."""
    parts = reference.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not _SAFE_ID.match(parts[2]):
        raise ValueError(f"not an ssh backend reference: {reference!r}")
    return parts[0], int(parts[1]), parts[2]


def native_state(pilot: RemotePilot) -> str:
    """The exit code wins: the launcher writes it before exiting, so a dead launcher without
    one was killed (by the director: cancelled; by anything else: vanished)."""
    if not pilot.present:
        return "unknown"
    if pilot.exit_code is not None:
        return "done" if pilot.exit_code == 0 else "failed"
    if pilot.alive:
        return "running"
    return "cancelled" if pilot.cancelled else "vanished"


def to_status(native: str, pilot: RemotePilot, pilot_dir: str) -> BackendStatus:
    reasons = {
        "failed": f"pilot exited with code {pilot.exit_code}",
        "cancelled": "cancelled by the site director",
        "vanished": "process vanished without an exit code",
        "unknown": f"pilot directory missing: {pilot_dir}",
    }
    return BackendStatus(
        state=NATIVE_STATES[native],
        native=native,
        exit_code=pilot.exit_code,
        reason=reasons.get(native, ""),
    )


def cleanup_age_minutes(days: float) -> int:
    return max(1, math.ceil(days * 24 * 60))


# ---- the backend (direct mode) ---------------------------------------------------------------


class _Abandon(Exception):
    """Stop submitting: the connection failed, so this and every later pilot of the request
    get the same outcome (retry when transient, failed when not)."""

    def __init__(self, error: CommandError) -> None:
        super().__init__(str(error))
        self.error = error


class SshBackend(Backend):
    name = "ssh"

    def __init__(
        self,
        options: SshOptions,
        bundle: PilotBundle | None = None,
        *,
        session: SshSession | None = None,
    ) -> None:
        self.options = options
        self.bundle = bundle
        self.session = session or session_for(options)
        self.runner = SshRunner(self.session)
        self.files = SftpFiles(self.session, timeout=options.command_timeout)
        self._work_dir = ""

    # -- paths --

    @property
    def work_dir(self) -> str:
        """The remote work directory, absolute (asks the host once, on first use: creating
        the backend must not need the host to be up)."""
        if not self._work_dir:
            self._work_dir = self.files.absolute(self.options.work_dir)
        return self._work_dir

    @property
    def pilots_dir(self) -> str:
        return posixpath.join(self.work_dir, PILOTS_SUBDIR)

    def pilot_dir(self, pilot_id: str) -> str:
        return posixpath.join(self.pilots_dir, pilot_id)

    # -- submit --

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        results: list[SubmitResult] = []
        abandon: CommandError | None = None
        bundle: BundleOnNode | None = None
        try:
            bundle = self._prepare(any(not launch.command for launch in request.pilots))
        except CommandError as exc:
            abandon = exc
        except OSError as exc:
            error = f"cannot prepare the work directory {self.options.work_dir}: {exc}"
            return [SubmitResult.failed(launch.pilot_id, error) for launch in request.pilots]
        for launch in request.pilots:
            if abandon is None:
                try:
                    results.append(self._start(launch, bundle))
                    continue
                except _Abandon as stop:
                    abandon = stop.error
            results.append(_abandoned(launch.pilot_id, abandon))
        return results

    def _prepare(self, needs_bundle: bool) -> BundleOnNode | None:
        """The remote directories, and the bundle when a pilot runs from it."""
        self.files.make_dirs(self.pilots_dir, 0o700)
        if not needs_bundle or self.bundle is None:
            return None
        return stage_bundle(
            self.files,
            self.bundle,
            posixpath.join(self.work_dir, BUNDLES_SUBDIR),
            posixpath.join(self.work_dir, BUNDLE_CACHE_SUBDIR),
        )

    def _start(self, launch: PilotLaunch, bundle: BundleOnNode | None) -> SubmitResult:
        pilot_id = launch.pilot_id
        if not _SAFE_ID.match(pilot_id):
            return SubmitResult.failed(pilot_id, f"unsafe pilot id {pilot_id!r}")
        if not launch.command and bundle is None:
            return SubmitResult.failed(
                pilot_id, "no pilot command and no pilot bundle (set director.pilot_bundle)"
            )
        pilot_dir = self.pilot_dir(pilot_id)
        try:
            if self.files.exists(pilot_dir):
                return SubmitResult.failed(pilot_id, f"pilot directory exists: {pilot_dir}")
            self.files.make_dirs(pilot_dir, 0o700)
            write_pilot_files(self.files, launch, pilot_dir, bundle)
        except CommandError as exc:
            remove_quietly(self.files, pilot_dir)
            raise _Abandon(exc) from exc
        except (OSError, ValueError) as exc:
            remove_quietly(self.files, pilot_dir)
            return SubmitResult.failed(pilot_id, f"cannot stage pilot in {pilot_dir}: {exc}")
        try:
            done = self.runner.run(
                ["sh", "-s", "--", pilot_dir],
                stdin=LAUNCH_SCRIPT.encode(),
                timeout=self.options.command_timeout,
            )
        except CommandError as exc:
            # Whether the pilot started is unknown: its directory stays (a pilot may be
            # running in it) until the sweep by age finds it ended.
            log.warning("pilot.launch_unknown", pilot_id=pilot_id, error=str(exc))
            raise _Abandon(exc) from exc
        try:
            if not done.ok:
                raise ValueError(done.describe())
            pid, _start = parse_launch_output(done.stdout)
        except ValueError as exc:
            remove_quietly(self.files, pilot_dir)
            return SubmitResult.failed(pilot_id, f"cannot start pilot in {pilot_dir}: {exc}")
        log.info("pilot.started", pilot_id=pilot_id, host=self.options.host, pid=pid)
        return SubmitResult.ok(pilot_id, f"{self.options.host}:{pid}:{pilot_id}")

    # -- status --

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        statuses: dict[str, BackendStatus] = {}
        asked: list[tuple[str, int, str]] = []
        for ref in references:
            try:
                host, pid, pilot_id = parse_reference(ref)
            except ValueError as exc:
                statuses[ref] = BackendStatus(PilotState.UNKNOWN, "unknown", reason=str(exc))
                continue
            if host != self.options.host:
                reason = f"pilot started on {host}, this queue reaches {self.options.host}"
                statuses[ref] = BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)
                continue
            asked.append((ref, pid, pilot_id))
        for batch in _batches(asked):
            answer = self._run_script("status", STATUS_SCRIPT, [], [(p, i) for _, p, i in batch])
            seen = parse_status_output(answer)
            for ref, _pid, pilot_id in batch:
                pilot = seen.get(pilot_id)
                if pilot is None:
                    statuses[ref] = BackendStatus(
                        PilotState.UNKNOWN, "unknown", reason="no answer from the remote host"
                    )
                else:
                    native = native_state(pilot)
                    statuses[ref] = to_status(native, pilot, self.pilot_dir(pilot_id))
        return statuses

    def _run_script(
        self,
        operation: str,
        script: str,
        options: list[str],
        pilots: Sequence[tuple[int, str]],
        extra_time: float = 0.0,
    ) -> str:
        """Run one of the remote scripts (sitedirectors/ssh_scripts.py) with the pilots
        directory, `options` and `pilots` (PID, id pairs) as its arguments; BackendError
        when the host cannot be reached or the script fails."""
        try:
            argv = ["sh", "-s", "--", self.pilots_dir, *options]
            for pid, pilot_id in pilots:
                argv += [str(pid), pilot_id]
            done = self.runner.run(
                argv, stdin=script.encode(), timeout=self.options.command_timeout + extra_time
            )
        except (CommandError, OSError) as exc:
            raise BackendError(self.name, operation, str(exc)) from exc
        if not done.ok:
            raise BackendError(self.name, operation, done.describe())
        return done.stdout

    def _parse_all(self, references: Sequence[str], operation: str) -> list[tuple[int, str]]:
        pilots: list[tuple[int, str]] = []
        for ref in references:
            try:
                _host, pid, pilot_id = parse_reference(ref)
            except ValueError:
                log.warning(f"pilot.{operation}_skipped", reference=ref, reason="bad reference")
                continue
            pilots.append((pid, pilot_id))
        return pilots

    # -- cancel, output, cleanup --

    def cancel(self, references: Sequence[str]) -> None:
        grace = self.options.kill_grace
        for batch in _batches(self._parse_all(references, "cancel")):
            answer = self._run_script(
                "cancel",
                CANCEL_SCRIPT,
                [str(math.ceil(grace * 10))],
                batch,
                extra_time=grace,
            )
            for fields in marked_lines(answer, "gridpilot-cancelled"):
                log.info("pilot.cancelled", pilot_id=fields[0], host=self.options.host)
            for fields in marked_lines(answer, "gridpilot-killed"):
                log.warning("pilot.killed", pid=fields[0], host=self.options.host, grace=grace)

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        _host, _pid, pilot_id = parse_reference(reference)
        try:
            return self.files.tail(posixpath.join(self.pilot_dir(pilot_id), LOG_FILE), max_bytes)
        except CommandError as exc:
            raise BackendError(self.name, "fetch_output", str(exc)) from exc

    def cleanup(self, references: Sequence[str]) -> None:
        """Remove the given pilots' directories (not while they run), and sweep leftovers
        older than `cleanup_after` days once per call."""
        age = str(cleanup_age_minutes(self.options.cleanup_after))
        for index, batch in enumerate(_batches(self._parse_all(references, "cleanup")) or [[]]):
            answer = self._run_script(
                "cleanup", CLEANUP_SCRIPT, [age if index == 0 else "-1"], batch
            )
            for fields in marked_lines(answer, "gridpilot-removed"):
                log.info("pilot.cleaned", pilot_id=fields[0], host=self.options.host)
            for fields in marked_lines(answer, "gridpilot-removed-old"):
                log.info("pilot.cleaned_old", pilot_id=fields[0], host=self.options.host)
            for fields in marked_lines(answer, "gridpilot-kept"):
                log.warning("pilot.cleanup_skipped", pilot_id=fields[0], reason="still running")

    def close(self) -> None:
        self.session.close()


def _abandoned(pilot_id: str, error: CommandError) -> SubmitResult:
    if error.transient:
        return SubmitResult.retry(pilot_id, str(error))
    return SubmitResult.failed(pilot_id, str(error))


def _batches(items: list[T]) -> list[list[T]]:
    return [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]


# ---- the factory -----------------------------------------------------------------------------


def create_ssh_backend(context: BackendContext) -> Backend:
    options, rest = convert_options(context.options, context.queue)
    if options.mode == "slurm":
        # The SLURM commands get the same deadline as every other remote command.
        slurm_options = convert_slurm_options(
            {**rest, "command_timeout": options.command_timeout}, context.queue
        )
        return SshSlurmBackend(
            session_for(options), options.work_dir, slurm_options, context.bundle
        )
    return SshBackend(options, context.bundle)
