"""SLURM's answers as the `slurm` backend reads them: pure functions, tested on captured output.

The native state table comes first (the vocabulary of `squeue`'s and `scontrol`'s job
states), then the parsers of `sbatch --parsable`, `squeue --json`, `scontrol show job` and the
optional `sacct`. Each parser returns jobs keyed by the backend's own references: "<jobid>"
for a plain job, "<jobid>_<task>" for a task of a job array (the array's id and the task's
index, as `scancel` and `scontrol` accept them) — whatever record SLURM happens to show for it
(a pending array is one record whose task list is expanded here; a started task has a record
of its own with its own job id).

Field formats differ between SLURM versions (22.05: `job_state` a string, `exit_code` a raw
wait status; later: a list of flags, structured exit codes, `{"set", "number"}` numbers), so
the JSON parser accepts both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendStatus

# Native SLURM job states -> the common vocabulary. COMPLETED means "exit code 0" to SLURM,
# but the exit code is checked anyway (see `to_status`).
NATIVE_STATES: dict[str, PilotState] = {
    "PENDING": PilotState.WAITING,
    "CONFIGURING": PilotState.WAITING,
    "REQUEUED": PilotState.WAITING,
    "REQUEUE_FED": PilotState.WAITING,
    "REQUEUE_HOLD": PilotState.WAITING,
    "RESIZING": PilotState.WAITING,
    "SUSPENDED": PilotState.WAITING,
    "STOPPED": PilotState.WAITING,
    "RUNNING": PilotState.RUNNING,
    "COMPLETING": PilotState.RUNNING,
    "SIGNALING": PilotState.RUNNING,
    "STAGE_OUT": PilotState.RUNNING,
    "COMPLETED": PilotState.DONE,
    "FAILED": PilotState.FAILED,
    "NODE_FAIL": PilotState.FAILED,
    "OUT_OF_MEMORY": PilotState.FAILED,
    "TIMEOUT": PilotState.FAILED,
    "BOOT_FAIL": PilotState.FAILED,
    "DEADLINE": PilotState.FAILED,
    "SPECIAL_EXIT": PilotState.FAILED,
    "CANCELLED": PilotState.ABORTED,
    "PREEMPTED": PilotState.ABORTED,
    "REVOKED": PilotState.ABORTED,
}
# Not SLURM's: the job is in none of squeue, scontrol and sacct.
VANISHED = "VANISHED"
VANISHED_REASON = "job vanished from the batch system"

_REASONS = {
    "CANCELLED": "cancelled in the batch system (scancel)",
    "PREEMPTED": "preempted by the batch system",
    "REVOKED": "revoked by the batch system (federation)",
    "NODE_FAIL": "the batch system reports a node failure",
    "OUT_OF_MEMORY": "killed by the batch system: out of memory",
    "TIMEOUT": "killed by the batch system: time limit reached",
    "BOOT_FAIL": "the batch system could not boot the node",
    "DEADLINE": "killed by the batch system: deadline reached",
}

_REFERENCE = re.compile(r"^(?P<job>[1-9][0-9]*)(?:_(?P<task>[0-9]+))?$")
_TASK_RANGE = re.compile(r"^(?P<first>[0-9]+)(?:-(?P<last>[0-9]+)(?::(?P<step>[1-9][0-9]*))?)?$")

# sbatch failures that will not go away by trying again.
_PERMANENT_SBATCH_ERRORS = (
    "invalid partition",
    "invalid account",
    "invalid qos",
    "invalid wckey",
    "invalid generic resource",
    "invalid feature specification",
    "invalid time limit",
    "requested node configuration is not available",
    "requested time limit is invalid",
    "unrecognized option",
    "invalid option",
    "unable to open file",
    "access/permission denied",
    "user's group not permitted",
)
# sbatch failures worth another try next cycle: the controller is busy or away, or a limit on
# jobs in the queue is reached for now.
_TRANSIENT_SBATCH_ERRORS = (
    "socket timed out",
    "unable to contact slurm controller",
    "resource temporarily unavailable",
    "temporarily unable to accept job",
    "connection refused",
    "zero bytes were transmitted or received",
    "slurm_persist_conn",
    "maxsubmitjobs",
    "maxsubmit",
    "job violates accounting/qos policy",
    "communication connection failure",
    "slurmctld is not responding",
)
_UNKNOWN_JOB_ERRORS = ("invalid job id specified", "invalid job id")
# scontrol's answer for an array task it no longer has.
_JOB_NOT_FOUND = re.compile(r"^Job \S+ not found$", re.MULTILINE)


@dataclass(frozen=True)
class NativeJob:
    """One job (or array task) as SLURM shows it."""

    state: str
    reason: str = ""
    # The batch script's exit status, and the signal that ended it (None: not known / none).
    exit_status: int | None = None
    signal: int | None = None


@dataclass(frozen=True)
class SlurmReference:
    job_id: str
    task: str | None = None

    def __str__(self) -> str:
        return self.job_id if self.task is None else f"{self.job_id}_{self.task}"


# ---- references and sbatch -------------------------------------------------------------------


def parse_reference(reference: str) -> SlurmReference:
    """ "<jobid>" or "<jobid>_<task>" -> its parts; ValueError for anything else."""
    match = _REFERENCE.match(reference)
    if match is None:
        raise ValueError(f"not a slurm backend reference: {reference!r}")
    return SlurmReference(match["job"], match["task"])


def parse_sbatch_output(stdout: str) -> str:
    """The job id `sbatch --parsable` printed ("<jobid>" or "<jobid>;<cluster>")."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    job_id = lines[-1].partition(";")[0] if lines else ""
    if not job_id.isdigit():
        raise ValueError(f"sbatch printed no job id: {stdout.strip()!r}")
    return job_id


def sbatch_error_is_transient(stderr: str) -> bool:
    """Whether a failed sbatch may work next cycle. Unrecognised errors count as permanent: a
    queue that fails visibly and sits out a few cycles is better than one retrying forever."""
    text = stderr.lower()
    if any(marker in text for marker in _PERMANENT_SBATCH_ERRORS):
        return False
    return any(marker in text for marker in _TRANSIENT_SBATCH_ERRORS)


def sbatch_error_message(stderr: str, returncode: int) -> str:
    """sbatch's own words for the failure, most specific line first."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return f"sbatch exited with {returncode} and printed nothing"
    # "sbatch: error: Batch job submission failed: <why>" is the summary line.
    lines.sort(key=lambda line: "submission failed" not in line.lower())
    return "; ".join(dict.fromkeys(lines))


def is_unknown_job_error(output: str) -> bool:
    """scontrol/squeue/scancel saying the job id is not (or no longer) known."""
    text = output.lower()
    return any(marker in text for marker in _UNKNOWN_JOB_ERRORS) or bool(
        _JOB_NOT_FOUND.search(output)
    )


def expand_task_ids(spec: str) -> list[str]:
    """An array task list as SLURM prints it ("0-3", "1,4-6", "0-9:2", "2-5%1") -> ids."""
    spec = spec.partition("%")[0].strip()
    tasks: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _TASK_RANGE.match(part)
        if match is None:
            raise ValueError(f"not an array task list: {spec!r}")
        first = int(match["first"])
        last = int(match["last"]) if match["last"] is not None else first
        step = int(match["step"] or 1)
        tasks.extend(str(t) for t in range(first, last + 1, step))
    return tasks


# ---- squeue --json -----------------------------------------------------------------------------


def _number(value: Any) -> int | None:
    """An integer field: plain (22.05) or {"set": bool, "number": int} (later versions)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        if value.get("set") is False or value.get("infinite") is True:
            return None
        return _number(value.get("number"))
    return None


def _state_name(value: Any) -> str:
    # 22.05: "RUNNING"; later: ["RUNNING", "<flag>", ...] with the base state first.
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").upper()


def _wait_status(raw: int) -> tuple[int | None, int | None]:
    """A raw wait status (22.05's exit_code) -> (exit status, signal)."""
    signal = raw & 0x7F
    if signal:
        return None, signal
    return (raw >> 8) & 0xFF, None


def _exit_fields(value: Any) -> tuple[int | None, int | None]:
    if isinstance(value, Mapping):
        # {"status": ..., "return_code": N | {"number": N}, "signal": {"id": N | {...}}}
        status = _number(value.get("return_code"))
        signal_info = value.get("signal")
        signal = None
        if isinstance(signal_info, Mapping):
            signal = _number(signal_info.get("id", signal_info.get("signal_id")))
        return status, signal or None
    raw = _number(value)
    return _wait_status(raw) if raw is not None else (None, None)


def _reason(value: Any) -> str:
    # SLURM says "None" when there is no reason.
    text = str(value or "")
    return "" if text == "None" else text


def _job_keys(job: Mapping[str, Any]) -> list[str]:
    """The references a squeue record stands for."""
    job_id = _number(job.get("job_id"))
    array_id = _number(job.get("array_job_id")) or 0
    task = _number(job.get("array_task_id"))
    task_list = str(job.get("array_task_string") or "")
    if not array_id:
        return [str(job_id)] if job_id else []
    if task is not None:
        return [f"{array_id}_{task}"]
    return [f"{array_id}_{t}" for t in expand_task_ids(task_list)] if task_list else []


def parse_squeue_json(text: str) -> dict[str, NativeJob]:
    """`squeue --json` -> jobs by reference. ValueError when it is not squeue's JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"squeue --json printed no JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ValueError("squeue --json printed no job list")
    # A controller that cannot be reached still gives exit status 0 and an empty list.
    errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
    if errors:
        said = "; ".join(
            f"{e.get('description') or e.get('error') or 'error'} ({e.get('source', '?')})"
            for e in errors
        )
        raise ValueError(f"squeue reported: {said}")
    jobs: dict[str, NativeJob] = {}
    for job in data["jobs"]:
        if not isinstance(job, dict):
            continue
        exit_status, signal = _exit_fields(job.get("exit_code"))
        native = NativeJob(
            state=_state_name(job.get("job_state")),
            reason=_reason(job.get("state_reason")),
            exit_status=exit_status,
            signal=signal,
        )
        for key in _job_keys(job):
            jobs[key] = native
    return jobs


# ---- scontrol show job -------------------------------------------------------------------------


def _records(text: str) -> Iterator[dict[str, str]]:
    """`scontrol show job` prints one block of Key=Value words per job, blank-line separated."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for word in block.split():
            key, sep, value = word.partition("=")
            if sep and key not in fields:
                fields[key] = value
        if "JobId" in fields:
            yield fields


def parse_scontrol_jobs(text: str) -> dict[str, NativeJob]:
    """`scontrol show job ID` -> jobs by reference (all tasks of an array for an array id)."""
    jobs: dict[str, NativeJob] = {}
    for fields in _records(text):
        exit_status, signal = _colon_exit_code(fields.get("ExitCode", ""))
        native = NativeJob(
            state=_state_name(fields.get("JobState")),
            reason=_reason(fields.get("Reason")),
            exit_status=exit_status,
            signal=signal,
        )
        array_id = fields.get("ArrayJobId", "")
        task_list = fields.get("ArrayTaskId", "")
        if array_id and task_list:
            for task in expand_task_ids(task_list):
                jobs[f"{array_id}_{task}"] = native
        else:
            jobs[fields["JobId"]] = native
    return jobs


def _colon_exit_code(text: str) -> tuple[int | None, int | None]:
    """scontrol's and sacct's "<exit status>:<signal>"."""
    status, sep, signal = text.partition(":")
    if not sep or not status.isdigit() or not signal.isdigit():
        return None, None
    return int(status), (int(signal) or None)


# ---- sacct (only with accounting) --------------------------------------------------------------


def parse_sacct(text: str) -> dict[str, NativeJob]:
    """`sacct -n -P -X -o JobID,State,ExitCode` -> jobs by reference."""
    jobs: dict[str, NativeJob] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        job, state, exit_code = parts[:3]
        exit_status, signal = _colon_exit_code(exit_code)
        # "CANCELLED by 0": the state is the first word.
        native = NativeJob(
            state=_state_name(state.split(" ")[0]), exit_status=exit_status, signal=signal
        )
        pending = re.match(r"^(\d+)_\[(.+)\]$", job)
        if pending:
            for task in expand_task_ids(pending[2]):
                jobs[f"{pending[1]}_{task}"] = native
        elif _REFERENCE.match(job):
            jobs[job] = native
    return jobs


# ---- the common vocabulary ---------------------------------------------------------------------


def _exit_code(native: NativeJob) -> int | None:
    if native.signal:
        # As a shell reports a program killed by a signal.
        return 128 + native.signal
    return native.exit_status


def to_status(native: NativeJob) -> BackendStatus:
    """A SLURM job's state as a BackendStatus (native = SLURM's state name)."""
    if native.state == VANISHED:
        return BackendStatus(PilotState.ABORTED, VANISHED, reason=VANISHED_REASON)
    state = NATIVE_STATES.get(native.state)
    exit_code = _exit_code(native)
    if state is None:
        return BackendStatus(
            PilotState.UNKNOWN,
            native.state or "unknown",
            exit_code=exit_code,
            reason=f"unknown SLURM job state {native.state or '(empty)'!r}",
        )
    reason = _REASONS.get(native.state, "")
    if state is PilotState.DONE and exit_code not in (0, None):
        state = PilotState.FAILED
    if state is PilotState.FAILED and not reason:
        reason = (
            f"pilot killed by signal {native.signal}"
            if native.signal
            else f"pilot exited with code {exit_code}"
        )
    elif state is PilotState.WAITING and native.reason:
        reason = f"{native.state.lower()}: {native.reason}"
    return BackendStatus(state, native.state, exit_code=exit_code, reason=reason)
