"""How the `htcondorce` backend reads and writes HTCondor's language: pure functions, tested
on job ClassAds captured from a real schedd.

The native state table comes first (HTCondor's `JobStatus`, refined by `HoldReasonCode`),
then the references ("<schedd name>#<cluster>.<proc>", like the front of HTCondor's own
GlobalJobId), the turning of job ads (as plain dicts of their attributes, from the queue or
from the history) into BackendStatus, the backend's options, the submit description, and the
sorting of HTCondor's error messages into "refused" (will fail again) and "transient".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendConfigError, BackendStatus, PilotQueue

# HTCondor's JobStatus -> (its name, the common vocabulary). Held (5) is Failed -- the backend
# removes a held pilot, so it never comes back -- except while the schedd is still receiving
# the pilot's input files (see WAITING_HOLD_CODES). Completed means "exited": its exit code
# decides between Done and Failed (see `to_status`).
NATIVE_STATES: dict[int, tuple[str, PilotState]] = {
    1: ("Idle", PilotState.WAITING),
    2: ("Running", PilotState.RUNNING),
    3: ("Removed", PilotState.ABORTED),
    4: ("Completed", PilotState.DONE),
    5: ("Held", PilotState.FAILED),
    6: ("TransferringOutput", PilotState.RUNNING),
    7: ("Suspended", PilotState.WAITING),
}
HELD = 5
REMOVED = 3
COMPLETED = 4
# HoldReasonCode of a hold that is part of the normal course: a spooled submission is held
# until its input files are on the schedd.
WAITING_HOLD_CODES: dict[int, str] = {16: "spooling input files to the CE"}
# Not HTCondor's: the job is neither in the queue nor in the history the backend searched.
VANISHED = "Vanished"
VANISHED_REASON = "job vanished from the CE (neither in its queue nor in its recent history)"

# The RemoveReason the backend gives, so that the history still tells why a job was removed.
CANCEL_REASON = "gridpilot: cancelled by the site director"
HELD_REMOVE_PREFIX = "gridpilot: held: "

# The attributes status needs (one query, then the history, both with this projection).
PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "LastJobStatus",
    "HoldReason",
    "HoldReasonCode",
    "HoldReasonSubCode",
    "RemoveReason",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "EnteredCurrentStatus",
    "GridpilotPilotId",
]
# Submit attributes the backend tags its jobs with.
PILOT_ID_ATTRIBUTE = "GridpilotPilotId"
QUEUE_ATTRIBUTE = "GridpilotQueue"

_REFERENCE = re.compile(
    r"^(?P<schedd>[A-Za-z0-9_.@:-]+)#(?P<cluster>[1-9][0-9]*)\.(?P<proc>[0-9]+)$"
)
_SCHEDD_NAME = re.compile(r"^[A-Za-z0-9_.@:-]+$")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>[0-9]{1,5}))?$")
DEFAULT_CE_PORT = 9619
_BY_USER = re.compile(r" \(by user [^()]*\)$")


# ---- references --------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class JobId:
    cluster: int
    proc: int

    def __str__(self) -> str:
        return f"{self.cluster}.{self.proc}"


@dataclass(frozen=True)
class CondorReference:
    schedd: str
    job: JobId

    def __str__(self) -> str:
        return f"{self.schedd}#{self.job}"


def parse_reference(reference: str) -> CondorReference:
    """ "<schedd>#<cluster>.<proc>" -> its parts; ValueError for anything else."""
    match = _REFERENCE.match(reference)
    if match is None:
        raise ValueError(f"not an htcondorce backend reference: {reference!r}")
    return CondorReference(match["schedd"], JobId(int(match["cluster"]), int(match["proc"])))


def jobs_constraint(jobs: Iterable[JobId]) -> str:
    """A ClassAd constraint matching exactly these jobs (one term per cluster)."""
    by_cluster: dict[int, list[int]] = {}
    for job in sorted(set(jobs)):
        by_cluster.setdefault(job.cluster, []).append(job.proc)
    if not by_cluster:
        return "false"
    terms = []
    for cluster, procs in by_cluster.items():
        if len(procs) == 1:
            terms.append(f"(ClusterId == {cluster} && ProcId == {procs[0]})")
        else:
            listed = ", ".join(str(p) for p in procs)
            terms.append(f"(ClusterId == {cluster} && member(ProcId, {{{listed}}}))")
    return " || ".join(terms)


def history_since(now: float, lookback: float) -> str:
    """condor_history's `since`: scanning (newest first) stops at the first job older than this."""
    return f"EnteredCurrentStatus < {int(now - lookback)}"


# ---- job ads -> BackendStatus ------------------------------------------------------------------


def job_of(ad: Mapping[str, Any]) -> JobId | None:
    cluster, proc = _int(ad.get("ClusterId")), _int(ad.get("ProcId"))
    if cluster is None or proc is None:
        return None
    return JobId(cluster, proc)


def ads_by_job(ads: Iterable[Mapping[str, Any]]) -> dict[JobId, Mapping[str, Any]]:
    """Ads keyed by job; for a job listed twice (history), the first -- the newest -- wins."""
    found: dict[JobId, Mapping[str, Any]] = {}
    for ad in ads:
        job = job_of(ad)
        if job is not None and job not in found:
            found[job] = ad
    return found


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def needs_removal(ad: Mapping[str, Any]) -> bool:
    """A held pilot that will not run any more: the backend removes it (and says why)."""
    return _int(ad.get("JobStatus")) == HELD and _int(ad.get("HoldReasonCode")) not in (
        WAITING_HOLD_CODES
    )


def hold_reason(ad: Mapping[str, Any]) -> str:
    reason = _text(ad.get("HoldReason")) or "no reason given"
    code, subcode = _int(ad.get("HoldReasonCode")), _int(ad.get("HoldReasonSubCode"))
    if code is not None:
        reason += f" (HoldReasonCode {code}" + (f", subcode {subcode})" if subcode else ")")
    return reason


def removal_reason_for_hold(ad: Mapping[str, Any]) -> str:
    """The RemoveReason the backend gives a held pilot: the history keeps the hold reason."""
    return HELD_REMOVE_PREFIX + hold_reason(ad)


def _exit(ad: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(exit code, signal): a shell's 128 + N for a pilot killed by signal N."""
    if ad.get("ExitBySignal") is True:
        signal = _int(ad.get("ExitSignal"))
        return (128 + signal if signal else None), signal
    return _int(ad.get("ExitCode")), None


def to_status(ad: Mapping[str, Any]) -> BackendStatus:
    """A job ad (queue or history) as a BackendStatus (native = HTCondor's status name)."""
    status = _int(ad.get("JobStatus"))
    entry = NATIVE_STATES.get(status) if status is not None else None
    if entry is None:
        return BackendStatus(
            PilotState.UNKNOWN, "unknown", reason=f"unknown HTCondor JobStatus {status!r}"
        )
    native, state = entry
    exit_code, signal = _exit(ad)
    if status == HELD:
        code = _int(ad.get("HoldReasonCode"))
        if code in WAITING_HOLD_CODES:
            return BackendStatus(PilotState.WAITING, native, reason=WAITING_HOLD_CODES[code])
        return BackendStatus(state, native, reason=f"held by the CE: {hold_reason(ad)}")
    if status == REMOVED:
        removed = _text(ad.get("RemoveReason"))
        if removed.startswith(HELD_REMOVE_PREFIX):
            # The schedd appends who removed it: that was this backend.
            held = _BY_USER.sub("", removed.removeprefix(HELD_REMOVE_PREFIX))
            return BackendStatus(PilotState.FAILED, native, reason=f"held by the CE: {held}")
        if removed.startswith(CANCEL_REASON):
            return BackendStatus(state, native, reason="cancelled by the site director (condor_rm)")
        return BackendStatus(state, native, reason=f"removed from the CE: {removed or 'no reason'}")
    if status == COMPLETED:
        if signal:
            return BackendStatus(
                PilotState.FAILED, native, exit_code, f"pilot killed by signal {signal}"
            )
        if exit_code not in (0, None):
            return BackendStatus(
                PilotState.FAILED, native, exit_code, f"pilot exited with code {exit_code}"
            )
        return BackendStatus(state, native, exit_code)
    if status == 7:
        return BackendStatus(state, native, reason="suspended by the CE")
    return BackendStatus(state, native)


def vanished() -> BackendStatus:
    return BackendStatus(PilotState.ABORTED, VANISHED, reason=VANISHED_REASON)


# ---- options -------------------------------------------------------------------------------------

SubmitValue = str | int | float | bool


class HTCondorCEOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    collector: str = ""
    schedd: str = ""
    token_file: str = ""
    auth_methods: str = "IDTOKENS,SCITOKENS"
    universe: str = "vanilla"
    max_wall: int = 0
    batch_size: int = 100
    extra_submit: dict[str, SubmitValue] = msgspec.field(default_factory=dict)
    timeout: float = 60.0
    vanish_grace: float = 120.0
    history_lookback: float = 86400.0
    work_dir: str = ""
    bundle_url: str = ""
    bundle_path: str = ""


# Submit commands the backend sets itself: an extra_submit entry may not change them.
RESERVED_SUBMIT = frozenset(
    {
        "universe", "executable", "arguments", "environment", "getenv", "initialdir",
        "transfer_executable", "transfer_input_files", "transfer_output_files",
        "should_transfer_files", "when_to_transfer_output", "output", "error", "input",
        "log", "queue", "request_cpus", "request_memory", "batch_name",
    }
)  # fmt: skip
_SUBMIT_NAME = re.compile(r"^(?:\+|[Mm][Yy]\.)?[A-Za-z_][A-Za-z0-9_.]*$")
_AUTH_METHODS = frozenset({"IDTOKENS", "SCITOKENS", "SSL", "FS", "FS_REMOTE", "KERBEROS", "TOKEN"})


def convert_options(options: Mapping[str, Any], queue: str) -> HTCondorCEOptions:
    """`backend_options` as HTCondorCEOptions with the defaults filled in (collector port,
    schedd name); BackendConfigError naming the field otherwise."""
    where = f"queues[{queue}].backend_options"
    try:
        converted = msgspec.convert(dict(options), HTCondorCEOptions)
    except msgspec.ValidationError as exc:
        raise BackendConfigError(f"{where}: {exc}") from exc
    problems: list[str] = []
    collector, schedd = converted.collector.strip(), converted.schedd.strip()
    if not collector and not schedd:
        problems.append(f"{where}.collector: required (the CE's host[:port])")
    if collector:
        match = _HOST_PORT.match(collector)
        if match is None or not 0 < int(match["port"] or DEFAULT_CE_PORT) < 65536:
            problems.append(f"{where}.collector must be host[:port], got {collector!r}")
        elif match["port"] is None:
            collector = f"{collector}:{DEFAULT_CE_PORT}"
    elif _SCHEDD_NAME.match(schedd):
        # An HTCondor-CE's schedd is named after its host, which also runs its collector.
        collector = f"{schedd.partition('@')[2] or schedd}:{DEFAULT_CE_PORT}"
    if not schedd and collector:
        schedd = collector.rsplit(":", 1)[0]
    if schedd and not _SCHEDD_NAME.match(schedd):
        problems.append(f"{where}.schedd is not a schedd name: {schedd!r}")
    if not converted.token_file:
        problems.append(f"{where}.token_file: required (an IDTOKEN or SciToken for the CE)")
    methods = [m.strip().upper() for m in converted.auth_methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in _AUTH_METHODS]
    if not methods or unknown:
        problems.append(
            f"{where}.auth_methods must list HTCondor methods (IDTOKENS, SCITOKENS, SSL, ...), "
            f"got {converted.auth_methods!r}"
        )
    if converted.universe != "vanilla":
        problems.append(
            f'{where}.universe must be "vanilla" (the CE routes jobs to its batch system '
            f"itself), got {converted.universe!r}"
        )
    for field, minimum in (("max_wall", 0), ("batch_size", 1)):
        if getattr(converted, field) < minimum:
            problems.append(f"{where}.{field} must be at least {minimum}")
    for field in ("timeout", "vanish_grace", "history_lookback"):
        if getattr(converted, field) <= 0:
            problems.append(f"{where}.{field} must be positive (seconds)")
    for field in ("token_file", "work_dir", "bundle_path"):
        value = getattr(converted, field)
        if value and not value.startswith("/"):
            problems.append(f"{where}.{field} must be an absolute path, got {value!r}")
    if converted.bundle_url and not re.match(
        r"^(https?|file|osdf|stash)://\S+$", converted.bundle_url
    ):
        problems.append(
            f"{where}.bundle_url must be a URL HTCondor can fetch, got {converted.bundle_url!r}"
        )
    if converted.bundle_url and converted.bundle_path:
        problems.append(f"{where}: bundle_url and bundle_path exclude each other")
    problems += _extra_submit_problems(converted.extra_submit, f"{where}.extra_submit")
    if problems:
        raise BackendConfigError("; ".join(problems))
    return msgspec.structs.replace(
        converted, collector=collector, schedd=schedd, auth_methods=",".join(methods)
    )


def _extra_submit_problems(extra: Mapping[str, SubmitValue], where: str) -> list[str]:
    problems = []
    for name, value in extra.items():
        if not _SUBMIT_NAME.match(name):
            problems.append(f"{where}: {name!r} is not a submit command name")
        elif name.lower() in RESERVED_SUBMIT:
            problems.append(f"{where}.{name} is set by the backend and cannot be changed")
        text = submit_value(value)
        if "\n" in text or "\r" in text or not text.strip():
            problems.append(f"{where}.{name} must be a one-line, non-empty value")
    return problems


def submit_value(value: SubmitValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- the submit description ------------------------------------------------------------------

# Per-pilot submit variables, filled from each pilot's item (the names are the backend's own).
ITEM_DIR = "gridpilot_dir"
ITEM_PILOT = "gridpilot_pilot"
ITEM_INPUTS = "gridpilot_inputs"


def submit_description(
    options: HTCondorCEOptions, queue: PilotQueue, start_script: str, log_file: str
) -> dict[str, str]:
    """The submit description of one transaction: every pilot of it is one item (its
    directory, id and input files), so one description serves them all. Nothing secret is in
    it: the registration token is one of the input files HTCondor transfers."""
    description = {
        "universe": options.universe,
        "batch_name": f"gridpilot-{queue.name}",
        "executable": f"$({ITEM_DIR})/{start_script}",
        "transfer_executable": "true",
        "initialdir": f"$({ITEM_DIR})",
        "transfer_input_files": f"$({ITEM_INPUTS})",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        # Only the pilot's log comes back: its work directory (jobs, the unpacked bundle)
        # stays on the worker node.
        "transfer_output_files": '""',
        "output": log_file,
        "error": log_file,
        "request_cpus": str(queue.slots),
        "request_memory": str(queue.memory_mb),
        f"+{QUEUE_ATTRIBUTE}": _classad_string(queue.name),
        f"+{PILOT_ID_ATTRIBUTE}": f'"$({ITEM_PILOT})"',
    }
    if options.max_wall > 0:
        # maxWallTime (minutes) is what an HTCondor-CE gives the batch system it routes to;
        # allowed_execute_duration makes the schedd itself hold a pilot that overstays.
        description["+maxWallTime"] = str(options.max_wall)
        description["allowed_execute_duration"] = str(options.max_wall * 60)
    for name, value in options.extra_submit.items():
        description[name] = submit_value(value)
    return description


def submit_item(pilot_dir: str, pilot_id: str, inputs: Iterable[str]) -> dict[str, str]:
    """One pilot's values for the description's item variables."""
    for value in (pilot_dir, pilot_id, *inputs):
        if any(c in value for c in ',"\n\x1f') or not value:
            raise ValueError(f"pilot {pilot_id}: unusable in a submit description: {value!r}")
    return {ITEM_DIR: pilot_dir, ITEM_PILOT: pilot_id, ITEM_INPUTS: ", ".join(inputs)}


def _classad_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- the client configuration ---------------------------------------------------------------


def client_config(queue: str, auth_methods: str, tokens_dir: str, empty_dir: str) -> str:
    """The whole HTCondor configuration of the process that talks to a queue's CE: its
    authentication methods, its token (the only file in `tokens_dir`) and no pool password."""
    token = f"{tokens_dir}/token"
    return (
        f"# HTCondor client configuration of gridpilot queue {queue}: written by the site\n"
        "# director before every operation; no other HTCondor configuration is read.\n"
        f"SEC_CLIENT_AUTHENTICATION_METHODS = {auth_methods}\n"
        f"SEC_TOKEN_DIRECTORY = {tokens_dir}\n"
        f"SEC_TOKEN_SYSTEM_DIRECTORY = {tokens_dir}\n"
        f"SCITOKENS_FILE = {token}\n"
        f"SEC_PASSWORD_DIRECTORY = {empty_dir}\n"
        f"SEC_PASSWORD_FILE = {empty_dir}/none\n"
    )


# ---- HTCondor's errors -----------------------------------------------------------------------

# Will fail again the same way: the CE refused us, or refused what we asked.
_REFUSED = (
    "authenticate",
    "permission denied",
    "not authorized",
    "no valid mapped user",
    "not a valid user account",
    "parse error",
    "failed to create job ad",
    "is not known to the collector",
)
# Worth another try: the CE or the network is away or slow.
_TRANSIENT = (
    "failed communication with collector",
    "failed to connect",
    "connection refused",
    "timed out",
    "timeout",
    "can't connect",
    "unable to connect",
    "network",
    "temporarily",
    "file transfer failed",
)


def error_is_refusal(message: str) -> bool:
    """The CE refused us (authentication, authorization) or what we asked (a bad submit
    description): trying again will not help."""
    text = message.lower()
    return any(marker in text for marker in _REFUSED)


def error_is_transient(message: str) -> bool:
    """Whether an HTCondor error may pass by itself. Refusals win over the connection words
    they often come with ("Failed to connect to schedd, errmsg=AUTHENTICATE:1003:...");
    unrecognised errors count as permanent: a queue that fails visibly and sits out a few
    cycles is better than one retrying forever."""
    text = message.lower()
    return not error_is_refusal(text) and any(marker in text for marker in _TRANSIENT)


_TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")


def redact(text: str) -> str:
    """Anything shaped like a JWT (an IDTOKEN, a SciToken, a registration token) replaced."""
    return _TOKEN_LIKE.sub("<token>", text)
