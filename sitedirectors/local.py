"""The `local` backend: pilots as processes on the director's own host (the embedded default).

Each pilot gets `<pilots_dir>/<pilot_id>/` and is started in a new session (so its process
group can be signalled as a whole) under a tiny `sh` launcher that records the pilot's exit
status in `exit_code` when it ends:

    sh -c '"$@" >pilot.log 2>&1; echo $? >exit_code' gridpilot-pilot python -m pilot ...

The pilot command travels as positional arguments, never through string splitting. The
pilot's registration token goes into `<pilot dir>/registration.token` (mode 0600; the pilot
removes it once read) and is passed as `--token-file`, with the CA as `--ca`: never in argv,
which every user on the host can read. The reference is `<pid>:<pilot_id>` (the launcher's
PID, which is also the process group id). Everything needed to answer `status` lives in
the directory, so a restarted director (a new backend instance) sees the same states.
Backend options ([queues.backend_options]):

    pilots_dir = "/var/lib/gridpilot-director/pilots"   # default: <director work_dir>/pilots
    kill_grace = 10.0                                   # seconds between SIGTERM and SIGKILL
    shell = "/bin/sh"
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import psutil

import sitedirectors
from central.models.pilot_states import PilotState
from gridpilot.channel import write_token_file
from gridpilot.logs import get_logger
from sitedirectors.base import (
    DEFAULT_LOG_CAP_BYTES,
    Backend,
    BackendConfigError,
    BackendContext,
    BackendStatus,
    PilotLaunch,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.remote import tail_file

log = get_logger(__name__)

# Native local states -> the common vocabulary.
NATIVE_STATES: dict[str, PilotState] = {
    "running": PilotState.RUNNING,
    "done": PilotState.DONE,
    "failed": PilotState.FAILED,
    "cancelled": PilotState.ABORTED,
    "vanished": PilotState.ABORTED,
    "unknown": PilotState.UNKNOWN,
}

LOG_FILE = "pilot.log"
EXIT_CODE_FILE = "exit_code"
PROCESS_FILE = "process.json"
REGISTRATION_TOKEN_FILE = "registration.token"
CANCELLED_FILE = "cancelled"

# Written atomically (tmp + rename) so a reader never sees a half-written exit code.
_LAUNCHER = '"$@" >pilot.log 2>&1; echo $? >exit_code.tmp && mv exit_code.tmp exit_code'
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# Failures worth retrying next cycle: the host is short of something, not misconfigured.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.ENOSPC, errno.EMFILE})
# How long a launcher that wrote its exit code may take to exit (it does nothing else).
_EXITING_GRACE = 2.0
# Tolerance when checking that a PID still belongs to the process we started.
_CREATE_TIME_SLACK = 0.5


class LocalOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pilots_dir: str = ""
    kill_grace: float = 10.0
    shell: str = "/bin/sh"


# ---- pure parsing ----------------------------------------------------------------------------


def parse_reference(reference: str) -> tuple[int, str]:
    """`"<pid>:<pilot_id>"` -> (pid, pilot_id); ValueError for anything else."""
    pid_text, sep, pilot_id = reference.partition(":")
    if not sep or not pid_text.isdigit() or not _SAFE_ID.match(pilot_id):
        raise ValueError(f"not a local backend reference: {reference!r}")
    return int(pid_text), pilot_id


def parse_exit_code(text: str) -> int | None:
    """The launcher's `exit_code` file content -> the exit status (None if unreadable)."""
    stripped = text.strip()
    if not stripped.lstrip("-").isdigit():
        return None
    return int(stripped)


def native_state(alive: bool, exit_code: int | None, cancelled: bool) -> str:
    """The native state from what is on disk and in the process table. The exit code wins:
    the launcher writes it before exiting, so a dead launcher without one was killed."""
    if exit_code is not None:
        return "done" if exit_code == 0 else "failed"
    if alive:
        return "running"
    return "cancelled" if cancelled else "vanished"


def to_status(native: str, exit_code: int | None) -> BackendStatus:
    reasons = {
        "failed": f"pilot exited with code {exit_code}",
        "cancelled": "cancelled by the site director",
        "vanished": "process vanished without an exit code",
    }
    return BackendStatus(
        state=NATIVE_STATES[native],
        native=native,
        exit_code=exit_code,
        reason=reasons.get(native, ""),
    )


# ---- the backend -----------------------------------------------------------------------------


def local_pilot_command() -> tuple[str, ...]:
    """The pilot from the director's own installation (no bundle needed on this host)."""
    return (sys.executable, "-m", "pilot")


def _project_root() -> str:
    # The pilot must run the same gridpilot code as the director, also from a checkout.
    return str(Path(sitedirectors.__file__).resolve().parent.parent)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, pilots_dir: Path, kill_grace: float = 10.0, shell: str = "/bin/sh"):
        self.pilots_dir = pilots_dir
        self.kill_grace = kill_grace
        self.shell = shell
        # Launchers started by this instance, kept so they are reaped (no zombies).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- submit --

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        self._reap()
        self.pilots_dir.mkdir(parents=True, exist_ok=True)
        return [self._start(launch) for launch in request.pilots]

    def _start(self, launch: PilotLaunch) -> SubmitResult:
        if not _SAFE_ID.match(launch.pilot_id):
            return SubmitResult.failed(launch.pilot_id, f"unsafe pilot id {launch.pilot_id!r}")
        pilot_dir = self.pilots_dir / launch.pilot_id
        try:
            pilot_dir.mkdir()
        except FileExistsError:
            return SubmitResult.failed(launch.pilot_id, f"pilot directory exists: {pilot_dir}")
        except OSError as exc:
            return _start_failure(launch.pilot_id, pilot_dir, exc)
        try:
            (pilot_dir / "work").mkdir()
            credentials = _credential_args(launch, pilot_dir)
            proc = subprocess.Popen(
                [
                    self.shell,
                    "-c",
                    _LAUNCHER,
                    "gridpilot-pilot",
                    *(launch.command or local_pilot_command()),
                    *launch.arguments,
                    *credentials,
                    "--work-dir",
                    str(pilot_dir / "work"),
                ],
                cwd=pilot_dir,
                env=self._environment(launch.environment),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            # Nothing started: leave no directory behind for a pilot that never was.
            shutil.rmtree(pilot_dir, ignore_errors=True)
            return _start_failure(launch.pilot_id, pilot_dir, exc)
        self._children[proc.pid] = proc
        self._write_process_file(pilot_dir, proc.pid)
        log.info("pilot.started", pilot_id=launch.pilot_id, pid=proc.pid, backend=self.name)
        return SubmitResult.ok(launch.pilot_id, f"{proc.pid}:{launch.pilot_id}")

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        paths = [_project_root(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.update(extra)
        return env

    def _write_process_file(self, pilot_dir: Path, pid: int) -> None:
        # The creation time lets a later status() tell our launcher from a recycled PID.
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            create_time = 0.0
        tmp = pilot_dir / (PROCESS_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps({"pid": pid, "create_time": create_time}))
            tmp.replace(pilot_dir / PROCESS_FILE)
        except OSError as exc:
            # The pilot runs anyway; status() then trusts the PID alone.
            log.warning("pilot.process_file_failed", pid=pid, error=str(exc))

    # -- status --

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        self._reap()
        return {ref: self._status_one(ref) for ref in references}

    def _status_one(self, reference: str) -> BackendStatus:
        try:
            pid, pilot_id = parse_reference(reference)
        except ValueError as exc:
            return BackendStatus(PilotState.UNKNOWN, "unknown", reason=str(exc))
        pilot_dir = self.pilots_dir / pilot_id
        if not pilot_dir.is_dir():
            return BackendStatus(
                PilotState.UNKNOWN, "unknown", reason=f"pilot directory missing: {pilot_dir}"
            )
        # Order matters: look at the process first, then the exit code (see native_state).
        alive = self._alive(pid, pilot_dir)
        exit_code = _read_exit_code(pilot_dir)
        cancelled = (pilot_dir / CANCELLED_FILE).exists()
        return to_status(native_state(alive, exit_code, cancelled), exit_code)

    def _alive(self, pid: int, pilot_dir: Path) -> bool:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            create_time = proc.create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            # Someone else's process now holds the PID: ours is gone.
            return False
        recorded = _read_create_time(pilot_dir)
        return recorded is None or abs(recorded - create_time) <= _CREATE_TIME_SLACK

    # -- cancel --

    def cancel(self, references: Sequence[str]) -> None:
        self._reap()
        signalled: list[int] = []
        for ref in references:
            try:
                pid, pilot_id = parse_reference(ref)
            except ValueError:
                log.warning("pilot.cancel_skipped", reference=ref, reason="bad reference")
                continue
            pilot_dir = self.pilots_dir / pilot_id
            if pilot_dir.is_dir():
                (pilot_dir / CANCELLED_FILE).touch()
            if self._alive(pid, pilot_dir) and _signal_group(pid, signal.SIGTERM):
                signalled.append(pid)
                log.info("pilot.cancelled", pilot_id=pilot_id, pid=pid)
        deadline = time.monotonic() + self.kill_grace
        while signalled and time.monotonic() < deadline:
            self._reap()
            signalled = [pgid for pgid in signalled if _group_exists(pgid)]
            if signalled:
                time.sleep(0.05)
        for pgid in signalled:
            log.warning("pilot.killed", pid=pgid, grace=self.kill_grace)
            _signal_group(pgid, signal.SIGKILL)
        self._reap()

    # -- output and cleanup --

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        _pid, pilot_id = parse_reference(reference)
        return tail_file(self.pilots_dir / pilot_id / LOG_FILE, max_bytes)

    def cleanup(self, references: Sequence[str]) -> None:
        self._reap()
        for ref in references:
            try:
                pid, pilot_id = parse_reference(ref)
            except ValueError:
                log.warning("pilot.cleanup_skipped", reference=ref, reason="bad reference")
                continue
            pilot_dir = self.pilots_dir / pilot_id
            if self._still_running(pid, pilot_dir):
                log.warning("pilot.cleanup_skipped", pilot_id=pilot_id, reason="still running")
                continue
            try:
                shutil.rmtree(pilot_dir)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("pilot.cleanup_failed", pilot_id=pilot_id, error=str(exc))

    def _still_running(self, pid: int, pilot_dir: Path) -> bool:
        """Alive, unless it already wrote its exit code: then it is exiting, give it a moment."""
        deadline = time.monotonic() + _EXITING_GRACE
        while self._alive(pid, pilot_dir):
            if _read_exit_code(pilot_dir) is None or time.monotonic() > deadline:
                return True
            time.sleep(0.02)
            self._reap()
        return False

    def close(self) -> None:
        self._reap()

    def _reap(self) -> None:
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]


def _credential_args(launch: PilotLaunch, pilot_dir: Path) -> list[str]:
    """Write the registration token to a private file; the pilot's options naming it."""
    args: list[str] = []
    if launch.registration_token:
        token_file = pilot_dir / REGISTRATION_TOKEN_FILE
        write_token_file(token_file, launch.registration_token)
        args += ["--token-file", str(token_file)]
    if launch.ca is not None:
        args += ["--ca", str(launch.ca)]
    return args


def _start_failure(pilot_id: str, pilot_dir: Path, exc: OSError) -> SubmitResult:
    error = f"cannot start pilot in {pilot_dir}: {exc}"
    if exc.errno in _TRANSIENT_ERRNOS:
        return SubmitResult.retry(pilot_id, error)
    return SubmitResult.failed(pilot_id, error)


def _read_exit_code(pilot_dir: Path) -> int | None:
    try:
        return parse_exit_code((pilot_dir / EXIT_CODE_FILE).read_text())
    except FileNotFoundError:
        return None


def _read_create_time(pilot_dir: Path) -> float | None:
    try:
        data = json.loads((pilot_dir / PROCESS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    value = data.get("create_time") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_local_backend(context: BackendContext) -> LocalBackend:
    options = _convert_options(context.options, context.queue)
    pilots_dir = Path(options.pilots_dir) if options.pilots_dir else context.work_dir / "pilots"
    if options.kill_grace < 0:
        raise BackendConfigError(
            f"queues[{context.queue}].backend_options.kill_grace must not be negative"
        )
    return LocalBackend(pilots_dir, kill_grace=options.kill_grace, shell=options.shell)


def _convert_options(options: Mapping[str, Any], queue: str) -> LocalOptions:
    try:
        return msgspec.convert(dict(options), LocalOptions)
    except msgspec.ValidationError as exc:
        raise BackendConfigError(f"queues[{queue}].backend_options: {exc}") from exc
