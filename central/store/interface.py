"""The store interface: everything central keeps durably.

Each method is one transaction, committed before it returns (durability before
acknowledgement). Bulk methods exist so callers batch: a batch of matches or heartbeats is one
commit, never one fsync each. Implementations: central/store/sqlite.py (embedded default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from central.models.job_states import JobStatus
from central.store.records import (
    ActiveSlot,
    BanRecord,
    CompactWaiting,
    FailoverRequestRecord,
    FileRecord,
    HeartbeatRecord,
    HistoryRecord,
    JobFilter,
    JobRecord,
    NewFailoverRequest,
    NewJob,
    OutputRecord,
    PilotFilter,
    PilotRecord,
    PilotUpdate,
    QueueStatusFilter,
    QueueStatusRecord,
    RevocationRecord,
    SandboxRecord,
    SECostRecord,
    SEHealthRecord,
    StatusCountRecord,
    StorageElementRecord,
    Transition,
    WaitingJob,
)


class Store(Protocol):
    # ---- lifecycle ----
    async def open(self) -> None:
        """Create or migrate the schema; must be called once before anything else."""

    async def close(self) -> None: ...

    # ---- jobs ----
    async def insert_jobs(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        """Insert all jobs as Waiting (one history row each) or none; returns their ids in order."""

    async def get_job(self, job_id: int) -> JobRecord | None: ...

    async def list_jobs(self, where: JobFilter, limit: int = 0) -> list[JobRecord]:
        """Jobs matching the filter, by job id; Deleted jobs only when asked for by status."""

    async def job_history(self, job_id: int) -> list[HistoryRecord]: ...

    async def apply_transitions(self, transitions: Sequence[Transition]) -> list[JobRecord | None]:
        """Apply in order, in one transaction. For each: the job after the change, or None when
        the job is unknown or not in `expect`/`expect_attempt` (then nothing changed for it)."""

    async def finish_attempt(
        self,
        transition: Transition,
        outputs: Sequence[OutputRecord],
        files: Sequence[FileRecord],
        requests: Sequence[NewFailoverRequest],
    ) -> JobRecord | None:
        """The final report of one attempt, atomically: the status change, the attempt's output
        files, their catalog entries (added to existing LFNs' replica sets), and failover
        requests. Nothing is written if the transition does not apply."""

    async def waiting_jobs(self) -> list[WaitingJob]:
        """Every Waiting job, to rebuild the matcher's task queues at start."""

    async def waiting_jobs_compact(self) -> CompactWaiting:
        """Every Waiting job as (job_id, priority, tq_id) by job id, and the encoded
        requirements of their task queues by tq_id: one read, no per-job decoding."""

    async def running_jobs_for_limits(self) -> list[ActiveSlot]:
        """(site, job_type, owner, group) of every Matched/Running/Stalled/Completing job."""

    def set_release_listener(self, listener: Callable[[Sequence[ActiveSlot]], None] | None) -> None:
        """Called on the event loop, after the commit, with the slot of every job a transition
        took out of the active states (once per such transition, whichever method did it)."""

    async def jobs_quiet_since(
        self, statuses: Sequence[JobStatus], cutoff: float
    ) -> list[JobRecord]:
        """Jobs in `statuses` whose last sign of life (last heartbeat, else last update) is
        older than `cutoff`: candidates for Stalled and for rescheduling."""

    async def record_heartbeats(self, beats: Sequence[HeartbeatRecord]) -> None:
        """Keep the latest heartbeat per job (ignored for a job no longer at that attempt)."""

    async def last_heartbeat(self, job_id: int) -> HeartbeatRecord | None: ...

    async def summarize_projects(self, where: JobFilter) -> list[StatusCountRecord]:
        """Job counts per (project, owner, status), Deleted excluded."""

    async def job_outputs(self, job_id: int) -> list[OutputRecord]:
        """Output files of the job's current attempt."""

    # ---- pilots ----
    async def insert_pilots(self, pilots: Sequence[PilotRecord]) -> None:
        """Insert new pilot records; an existing pilot id is left as it is."""

    async def update_pilots(self, updates: Sequence[PilotUpdate]) -> None:
        """Unknown pilot ids are ignored. A state change also sets state_changed."""

    async def get_pilot(self, pilot_id: str) -> PilotRecord | None: ...

    async def list_pilots(self, where: PilotFilter) -> list[PilotRecord]: ...

    async def upsert_queue_statuses(self, statuses: Sequence[QueueStatusRecord]) -> None:
        """Replace each (director, queue)'s last report."""

    async def list_queue_statuses(self, where: QueueStatusFilter) -> list[QueueStatusRecord]: ...

    # ---- storage elements and the replica catalog ----
    async def upsert_storage_elements(self, ses: Sequence[StorageElementRecord]) -> None:
        """Insert or refresh SEs from configuration; keeps an admin's read/write status of
        existing SEs unless the configuration changed it."""

    async def list_storage_elements(self) -> list[StorageElementRecord]: ...

    async def set_storage_element_status(self, name: str, read: bool, write: bool) -> bool:
        """False when the SE is unknown."""

    async def add_files(self, files: Sequence[FileRecord]) -> None:
        """Register files with their replicas. An existing LFN must have the same size and
        checksum (ValueError otherwise); its replica set grows."""

    async def get_files(self, lfns: Sequence[str]) -> dict[str, FileRecord]:
        """Known LFNs only; a missing key means the LFN is not in the catalog."""

    async def list_files(self, lpn: str) -> list[FileRecord]:
        """Files directly or indirectly under the directory `lpn`, by LFN."""

    async def remove_replica(self, lfn: str, se: str) -> None: ...

    async def remove_file(self, lfn: str) -> bool:
        """The catalog entry with its replicas; False when the LFN is unknown."""

    async def set_replica_suspect(self, lfn: str, se: str, reason: str) -> bool:
        """Mark one replica suspect (why) or clear it (""); False when there is no such
        replica."""

    # ---- SE health and learned costs ----
    async def put_se_health(self, health: SEHealthRecord) -> None: ...

    async def list_se_health(self) -> list[SEHealthRecord]: ...

    async def put_se_costs(self, costs: Sequence[SECostRecord]) -> None: ...

    async def list_se_costs(self) -> list[SECostRecord]: ...

    # ---- failover requests ----
    async def add_failover_requests(
        self, requests: Sequence[NewFailoverRequest], now: float
    ) -> list[int]: ...

    async def due_failover_requests(self, now: float, limit: int) -> list[FailoverRequestRecord]:
        """Waiting requests whose next_try has come and that are the oldest waiting request
        of their LFN; highest priority first, then oldest."""

    async def update_failover_request(
        self,
        request_id: int,
        *,
        status: str,
        attempts: int,
        last_error: str,
        next_try: float,
        now: float,
    ) -> None: ...

    async def list_failover_requests(
        self,
        job_id: int = 0,
        status: str = "",
        request_ids: Sequence[int] = (),
        lfn: str = "",
    ) -> list[FailoverRequestRecord]: ...

    # ---- sandboxes (metadata; the bytes live in central/sandboxes.py's directory) ----
    async def add_sandbox(self, sandbox: SandboxRecord) -> None:
        """Idempotent for an existing id."""

    async def get_sandbox(self, sandbox_id: str) -> SandboxRecord | None: ...

    # ---- security (revocations, single-use registration tokens, bans) ----
    async def add_revocation(self, revocation: RevocationRecord) -> RevocationRecord:
        """Record a revocation; revoking the same target again moves it to the later time.
        Returns the revocation as stored."""

    async def list_revocations(self) -> list[RevocationRecord]: ...

    async def consume_registration(self, jti: str, expires: float) -> bool:
        """Spend a single-use registration token; False when it was spent before."""

    async def used_registrations(self, now: float) -> dict[str, float]:
        """Spent registration tokens not yet expired: jti -> expiry."""

    async def prune_registrations(self, now: float) -> int:
        """Forget spent registration tokens that expired before `now`; how many."""

    async def set_ban(self, kind: str, ban: BanRecord) -> None:
        """Ban or unban a site (`kind` "site") or a user ("user")."""

    async def list_bans(self, kind: str) -> list[BanRecord]: ...
