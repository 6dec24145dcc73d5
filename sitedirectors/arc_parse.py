"""An ARC CE's REST answers as the `arc` backend reads them, and what it sends: pure functions,
tested on answers captured from a real A-REX (6.17, REST 1.0).

The native state table comes first (the REST interface's job states), then the parsers of the
JSON answers to `POST /jobs?action=new|status|info|kill|clean`, then the builders of what a
submission carries: the xRSL job descriptions and the small job wrapper every pilot's job
runs.

A-REX renders its XML answers as JSON, so a list of one element arrives as a single object:
`{"job": {...}}` for one job, `{"job": [{...}, ...]}` for several. Every per-job entry has its
own `status-code` (201 created, 200 ok, 202 queued, 404 unknown job, 500/505 refused) while
the HTTP status of the whole answer is 201.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendStatus

# REST job states (ARC 6 "arcrest:" states) -> the common vocabulary. FINISHED means exit
# code 0 to A-REX (a non-zero exit code is FAILED), but the exit code is checked anyway.
NATIVE_STATES: dict[str, PilotState] = {
    # A-REX has the job but has not handed it to the batch system yet (inputs uploading).
    "ACCEPTING": PilotState.SUBMITTED,
    "ACCEPTED": PilotState.SUBMITTED,
    "PREPARING": PilotState.SUBMITTED,
    "PREPARED": PilotState.SUBMITTED,
    "SUBMITTING": PilotState.SUBMITTED,
    # In the batch system.
    "QUEUING": PilotState.WAITING,
    "HELD": PilotState.WAITING,
    "HOLD": PilotState.WAITING,
    "RUNNING": PilotState.RUNNING,
    # The batch job ended; A-REX is collecting its outputs.
    "EXITINGLRMS": PilotState.RUNNING,
    "EXECUTED": PilotState.RUNNING,
    "FINISHING": PilotState.RUNNING,
    # In the batch system, in a state A-REX does not classify: the job exists and is alive.
    "OTHER": PilotState.RUNNING,
    # Being killed: not over until A-REX says KILLED.
    "KILLING": PilotState.RUNNING,
    "FINISHED": PilotState.DONE,
    "FAILED": PilotState.FAILED,
    "KILLED": PilotState.ABORTED,
}
# States in which A-REX no longer has the job (its session directory is gone): as good as
# not knowing it. "None" is what A-REX says for a job id it does not know.
GONE_STATES = frozenset({"WIPED", "DELETED", "NONE", ""})
# Not ARC's: the job is unknown to the CE for longer than the backend's grace periods.
VANISHED = "VANISHED"
VANISHED_REASON = "job vanished from the CE"
CANCELLED_REASON = "cancelled by the site director (ARC action=kill)"

_JOB_ID = re.compile(r"^[A-Za-z0-9]{8,128}$")
# ARC queue names, runtime environment names and file names the xRSL may carry.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+/-]{0,199}$")

# Per-job refusals of action=new that may pass later (A-REX is short of something); others
# (queue not allowed, bad description, not authorised) are permanent.
_TRANSIENT_SUBMIT_ERRORS = (
    "no more jobs allowed",
    "failed to create",
    "no space",
    "temporarily",
    "try again",
    "too many",
)


@dataclass(frozen=True)
class JobEntry:
    """One per-job entry of an answer: the job id (may be empty for a refused new job), the
    entry's own status code and reason, and the state when the answer carries one."""

    job_id: str
    code: int
    reason: str = ""
    state: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


@dataclass(frozen=True)
class JobInfo:
    """What `action=info` adds to a finished job's state: its exit code and A-REX's error."""

    job_id: str
    code: int
    state: str = ""
    exit_code: int | None = None
    error: str = ""


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.match(text))


def is_safe_name(text: str) -> bool:
    return bool(_SAFE_NAME.match(text)) and ".." not in text.split("/")


# ---- answers ---------------------------------------------------------------------------------


def _load(text: str, what: str) -> Any:
    if not text.strip():
        # What A-REX answers for an empty job list.
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: the CE answered no JSON ({exc})") from exc


def _entries(data: Any, what: str) -> list[Mapping[str, Any]]:
    """The per-job entries of an answer, whether A-REX rendered one object or a list."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: the CE answered JSON without a job list")
    jobs = data.get("job")
    if jobs is None:
        # An empty <jobs/> renders as "" or {}: no entries.
        return []
    if isinstance(jobs, Mapping):
        return [jobs]
    if isinstance(jobs, list):
        return [job for job in jobs if isinstance(job, Mapping)]
    raise ValueError(f"{what}: the CE answered an unexpected job list: {type(jobs).__name__}")


def _code(value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def _text(value: Any) -> str:
    return str(value).strip() if isinstance(value, str | int | float) else ""


def parse_entries(text: str, what: str) -> list[JobEntry]:
    """The per-job entries of an answer to action=new|status|kill|clean, in answer order."""
    entries = []
    for job in _entries(_load(text, what), what):
        entries.append(
            JobEntry(
                job_id=_text(job.get("id")),
                code=_code(job.get("status-code")),
                reason=_text(job.get("reason")),
                state=_text(job.get("state")),
            )
        )
    return entries


def parse_new_jobs(text: str, expected: int) -> list[JobEntry]:
    """The answer to action=new: one entry per job description, in submission order."""
    entries = parse_entries(text, "action=new")
    if len(entries) != expected:
        raise ValueError(
            f"action=new: the CE answered for {len(entries)} jobs, {expected} were submitted"
        )
    return entries


def parse_status(text: str) -> dict[str, JobEntry]:
    """The answer to action=status, by job id."""
    return {e.job_id: e for e in parse_entries(text, "action=status") if e.job_id}


def _arcrest_state(states: Any) -> str:
    if isinstance(states, str):
        states = [states]
    if not isinstance(states, list):
        return ""
    for state in states:
        if isinstance(state, str) and state.startswith("arcrest:"):
            return state.removeprefix("arcrest:")
    return ""


def _exit_code(value: Any) -> int | None:
    text = _text(value)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_info(text: str) -> dict[str, JobInfo]:
    """The answer to action=info (a GLUE2 ComputingActivity per job), by job id."""
    infos: dict[str, JobInfo] = {}
    for job in _entries(_load(text, "action=info"), "action=info"):
        job_id = _text(job.get("id"))
        if not job_id:
            continue
        document = job.get("info_document")
        activity = document.get("ComputingActivity") if isinstance(document, Mapping) else None
        if not isinstance(activity, Mapping):
            activity = {}
        error = activity.get("Error")
        if isinstance(error, list):
            error = "; ".join(str(e) for e in error)
        infos[job_id] = JobInfo(
            job_id=job_id,
            code=_code(job.get("status-code")),
            state=_arcrest_state(activity.get("State")),
            exit_code=_exit_code(activity.get("ExitCode")),
            error=_text(error),
        )
    return infos


def submit_error_is_transient(reason: str) -> bool:
    """Whether a per-job refusal of action=new may pass next cycle. Unrecognised refusals
    count as permanent: a queue that fails visibly and sits out a few cycles is better than
    one retrying forever."""
    text = reason.lower()
    return any(marker in text for marker in _TRANSIENT_SUBMIT_ERRORS)


# ---- the common vocabulary -------------------------------------------------------------------


def is_gone(entry: JobEntry) -> bool:
    """The CE does not have the job (any more): unknown id, or wiped/deleted."""
    return entry.code == 404 or entry.state.upper() in GONE_STATES


def to_status(
    native: str, *, exit_code: int | None = None, error: str = "", cancelled: bool = False
) -> BackendStatus:
    """An ARC REST state as a BackendStatus (native = ARC's state name)."""
    if native == VANISHED:
        return BackendStatus(PilotState.ABORTED, VANISHED, reason=VANISHED_REASON)
    state = NATIVE_STATES.get(native.upper())
    if state is None:
        return BackendStatus(
            PilotState.UNKNOWN,
            native or "unknown",
            exit_code=exit_code,
            reason=f"unknown ARC job state {native or '(empty)'!r}",
        )
    reason = ""
    if state is PilotState.DONE and exit_code not in (0, None):
        state = PilotState.FAILED
    if state is PilotState.FAILED:
        said = f"ARC: {error}" if error else "ARC reports the job failed"
        reason = f"pilot exited with code {exit_code} ({said})" if exit_code else said
    elif state is PilotState.ABORTED:
        reason = CANCELLED_REASON if cancelled else f"killed on the CE ({error or 'no reason'})"
    return BackendStatus(state, native.upper(), exit_code=exit_code, reason=reason)


# ---- what a submission carries -----------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """A file the job needs in its session directory: uploaded by the director (no source)
    or fetched by A-REX from `source` (a URL)."""

    name: str
    source: str = ""


@dataclass(frozen=True)
class JobDescription:
    executable: str
    inputs: tuple[InputFile, ...]
    log_file: str
    job_name: str
    queue: str = ""
    walltime_minutes: int = 0
    memory_mb: int = 0
    count: int = 1
    runtime_environments: tuple[str, ...] = ()


def _quote(value: str) -> str:
    """An xRSL literal: double quotes, an inner one doubled."""
    return '"' + value.replace('"', '""') + '"'


def render_xrsl(job: JobDescription) -> str:
    """One job description in xRSL (`&(...)`). The executable is started in the session
    directory; its output and error go to `log_file`, the only file the job keeps."""
    inputs = "".join(f"({_quote(f.name)} {_quote(f.source)})" for f in job.inputs)
    parts = [
        f"(executable={_quote(job.executable)})",
        f"(inputfiles={inputs})",
        f"(outputfiles=({_quote(job.log_file)} {_quote('')}))",
        # Both to the same file: A-REX then redirects 2>&1 (its own dialect has no "join").
        f"(stdout={_quote(job.log_file)})",
        f"(stderr={_quote(job.log_file)})",
        f"(jobname={_quote(job.job_name)})",
        f"(count={_quote(str(job.count))})",
    ]
    if job.queue:
        parts.append(f"(queue={_quote(job.queue)})")
    if job.walltime_minutes > 0:
        # ISO 8601: A-REX reads a bare number as seconds, arcsub's xRSL as minutes.
        parts.append(f"(walltime={_quote(f'PT{job.walltime_minutes}M')})")
    if job.memory_mb > 0:
        parts.append(f"(memory={_quote(str(job.memory_mb))})")
    parts += [f"(runtimeenvironment={_quote(rte)})" for rte in job.runtime_environments]
    return "&" + "".join(parts)


def render_submission(jobs: Sequence[JobDescription]) -> str:
    """The body of one action=new: a single description, or several as one multi-job xRSL
    (`+(&...)(&...)`; A-REX answers for each job separately)."""
    if not jobs:
        raise ValueError("nothing to submit")
    if len(jobs) == 1:
        return render_xrsl(jobs[0])
    return "+" + "".join(f"({render_xrsl(job)})" for job in jobs)


def job_ids_body(job_ids: Iterable[str]) -> bytes:
    """The JSON body of action=status|info|kill|clean."""
    return json.dumps({"job": [{"id": job_id} for job_id in job_ids]}).encode()
