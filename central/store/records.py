"""Plain records that cross the store interface. Times are float seconds since the epoch (UTC)."""

from __future__ import annotations

import msgspec

from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState


class _Record(msgspec.Struct, kw_only=True):
    pass


# ---- jobs ------------------------------------------------------------------------------------


class NewJob(_Record):
    """A job to insert as Waiting. `spec` is the serialized gridpilot.v1.JobSpec (opaque here);
    `requirements` is the matcher's encoded task-queue key (opaque here)."""

    spec: bytes
    requirements: bytes
    project: str
    owner: str
    group: str
    job_name: str
    priority: int
    job_type: str


class JobRecord(_Record):
    job_id: int
    spec: bytes
    requirements: bytes
    project: str
    owner: str
    group: str
    job_name: str
    priority: int
    job_type: str
    status: JobStatus
    minor_status: str
    application_status: str
    site: str
    pilot_id: str
    # 1 for the first run; a reschedule adds one, so every attempt writes new output names.
    attempt: int
    reschedule_count: int
    submitted: float
    updated: float
    # Last heartbeat of the current attempt, or None before the first.
    last_heartbeat: float | None
    output_sandbox: str
    kill_requested: bool


class WaitingJob(_Record):
    """What the matcher needs to rebuild its task queues at start."""

    job_id: int
    priority: int
    owner: str
    group: str
    requirements: bytes


# (site, job_type, owner, group) of a job holding a slot at a site (Matched, Running, Stalled
# or Completing): what the matcher's running limits count.
ActiveSlot = tuple[str, str, str, str]

# (job_id, priority, tq_id) of a waiting job, and the task queues' encoded requirements by id.
CompactWaiting = tuple[list[tuple[int, int, int]], dict[int, bytes]]


class JobScope(_Record):
    """Jobs a caller may reach: its own (`owner`), OR its group's (`group`, when set), OR
    every job of a type (`job_type`, when set, e.g. "Production" for production managers)."""

    owner: str
    group: str = ""
    job_type: str = ""


class JobFilter(_Record):
    """Empty fields do not filter."""

    project: str = ""
    owner: str = ""
    site: str = ""
    job_ids: tuple[int, ...] = ()
    statuses: tuple[JobStatus, ...] = ()
    # None: every job (administrators, agents).
    scope: JobScope | None = None


class Transition(_Record):
    """One status change, applied only if the job is still as the caller saw it.

    `expect` (if not empty) lists the statuses the job must be in, `expect_attempt` (if set)
    the attempt it must be at; otherwise the transition is skipped and reported as not applied.
    Fields left None keep their value. Every applied transition writes one history row.
    """

    job_id: int
    status: JobStatus
    minor_status: str
    source: str
    time: float
    expect: tuple[JobStatus, ...] = ()
    expect_attempt: int | None = None
    application_status: str | None = None
    site: str | None = None
    pilot_id: str | None = None
    attempt: int | None = None
    reschedule_count: int | None = None
    output_sandbox: str | None = None
    kill_requested: bool | None = None
    # Clear last_heartbeat (a new attempt starts with none).
    reset_heartbeat: bool = False


class HistoryRecord(_Record):
    status: JobStatus
    minor_status: str
    application_status: str
    time: float
    source: str


class HeartbeatRecord(_Record):
    job_id: int
    attempt: int
    time: float
    cpu_seconds: float
    wall_seconds: float
    rss_bytes: int
    disk_free_bytes: int
    load_average: float
    stdout_tail: tuple[str, ...] = ()


class StatusCountRecord(_Record):
    project: str
    owner: str
    status: JobStatus
    count: int
    first_submitted: float


class OutputRecord(_Record):
    """One output file of one job attempt."""

    job_id: int
    attempt: int
    lfn: str
    se: str
    size: int
    adler32: str


# ---- pilots ----------------------------------------------------------------------------------


class PilotRecord(_Record):
    pilot_id: str
    reference: str
    site: str
    ce: str
    queue: str
    backend: str
    director: str
    state: PilotState
    submitted: float
    registered: float | None = None
    last_heartbeat: float | None = None
    jobs_run: int = 0
    status_reason: str = ""
    log_tail: str = ""
    # Time of the last "found no job" report; None when the pilot is busy.
    idle_since: float | None = None
    # Time the state last changed (drives Unknown -> Aborted).
    state_changed: float = 0.0


class PilotUpdate(_Record):
    """Fields left None keep their value."""

    pilot_id: str
    time: float
    state: PilotState | None = None
    status_reason: str | None = None
    log_tail: str | None = None
    # The backend's reference, known only after submission.
    reference: str | None = None
    registered: float | None = None
    last_heartbeat: float | None = None
    jobs_run: int | None = None
    # Set idle_since to `time` (True), clear it (False), or keep it (None).
    idle: bool | None = None


class PilotFilter(_Record):
    site: str = ""
    # Any of these sites (a site director's reach); empty does not filter.
    sites: tuple[str, ...] = ()
    queue: str = ""
    director: str = ""
    states: tuple[PilotState, ...] = ()
    limit: int = 0
    pilot_id: str = ""


class QueueStatusRecord(_Record):
    """How one director's queue fared in its last cycle (keyed by director and queue)."""

    director: str
    queue: str
    site: str
    ce: str
    backend: str
    # "ok", "failing" or "disabled".
    health: str
    error: str = ""
    skip_cycles_left: int = 0
    failing_since: float | None = None
    submitted_last_cycle: int = 0
    reported: float = 0.0


class QueueStatusFilter(_Record):
    site: str = ""
    sites: tuple[str, ...] = ()
    director: str = ""


# ---- data ------------------------------------------------------------------------------------


class StorageElementRecord(_Record):
    name: str
    site: str
    url: str
    read_allowed: bool
    write_allowed: bool


class ReplicaRecord(_Record):
    lfn: str
    se: str


class FileRecord(_Record):
    """A catalog entry: one LFN with its size, checksum and the SEs holding a copy."""

    lfn: str
    size: int
    adler32: str
    ses: tuple[str, ...]
    job_id: int = 0
    # SE -> why its copy is suspect (a checksum mismatch seen by a reader); read last.
    suspects: dict[str, str] = msgspec.field(default_factory=dict)


# What a data request does (the executor: central/logic/failover.py).
REPLICATE = "replicate"  # copy source_se -> target_se, verify, then drop the source copy
REMOVE = "remove"  # delete the copy on target_se ("" = every copy) and its catalog entry
CHECK = "check"  # verify the copy on target_se against the catalog; clear or keep "suspect"
OPERATIONS = (REPLICATE, REMOVE, CHECK)
# Default priorities: a job's parked outputs first, then users' removals, then checks.
DEFAULT_PRIORITY = {REPLICATE: 5, REMOVE: 3, CHECK: 1}


class NewFailoverRequest(_Record):
    """A data request. Requests on one LFN run one at a time, in the order they were made;
    among LFNs, higher priority first."""

    job_id: int
    lfn: str
    source_se: str
    target_se: str
    operation: str = REPLICATE
    priority: int = DEFAULT_PRIORITY[REPLICATE]
    # Who asked (a user's removal); "" for the system's own requests.
    owner: str = ""


class FailoverRequestRecord(_Record):
    request_id: int
    job_id: int
    lfn: str
    source_se: str
    target_se: str
    # "Waiting", "Done" or "Failed".
    status: str
    attempts: int
    last_error: str
    created: float
    updated: float
    next_try: float
    operation: str = REPLICATE
    priority: int = 0
    owner: str = ""


class SEHealthRecord(_Record):
    """What the probe agent last found on one SE."""

    se: str
    # False after `probe_failures` failed probes in a row; True again after one success.
    available: bool = True
    consecutive_failures: int = 0
    last_probe: float = 0.0
    last_ok: float = 0.0
    last_error: str = ""
    # As the SE reports them; -1 when it does not.
    total_bytes: int = -1
    free_bytes: int = -1
    probe_seconds: float = 0.0


class SECostRecord(_Record):
    """The learned cost (seconds per GB) of reading from an SE at a site: a moving average of
    what wrappers measured, seeded by the configured distance."""

    site: str
    se: str
    cost: float
    samples: int
    failures: int
    updated: float


class SandboxRecord(_Record):
    sandbox_id: str
    size: int
    # "input" or "output".
    kind: str
    owner: str
    job_id: int
    attempt: int
    created: float


# ---- security --------------------------------------------------------------------------------


class RevocationRecord(_Record):
    """Tokens refused from `created` on. `kind` is "jti" (one token), "user" or
    "site_director" (every token of that subject issued up to `created`) or "pilot" (every
    token bound to that pilot id: its session and its jobs' tokens)."""

    kind: str
    value: str
    reason: str
    created: float


class BanRecord(_Record):
    """An administrator's ban (or explicit unban) of a site or a user; overrides the config."""

    name: str
    banned: bool
    reason: str
    updated: float
