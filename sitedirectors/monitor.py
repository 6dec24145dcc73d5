"""Tracking submitted pilots: backend states -> central, then cleanup of finished ones.

Central's list of this director's non-final pilots is the work list, with the backend
references the director sent after submission. The journal (a local cache) fills in a
reference central missed -- and sends it again -- and learns the references of live pilots
it lacks (a director restarted without its journal). Central never moves a pilot backwards,
so only forward changes (or Unknown, or recovery from Unknown) are sent, and a pilot running on its
backend is reported as Waiting until it registers (see `as_reported`). A pilot that left central's
non-final list (it reported its own end, or was aborted) is final for the journal too, and its
backend files are cleaned up `cleanup_after` seconds later. Every pilot's log tail (capped)
goes to central once its backend sees it end: with the state change when the director saw the
end first, or on its own when the pilot reported its end itself (`send_late_logs`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from gridpilot.logs import get_logger
from sitedirectors.base import (
    Backend,
    BackendError,
    BackendNotSupportedError,
    BackendStatus,
    LivePilot,
)
from sitedirectors.central_client import CentralClient, KnownPilot, PilotStateUpdate
from sitedirectors.config import QueueSection
from sitedirectors.journal import Journal, JournalEntry

log = get_logger(__name__)

_RANK: dict[PilotState, int] = {
    PilotState.SUBMITTED: 0,
    PilotState.WAITING: 1,
    PilotState.RUNNING: 2,
}
# States in which something went wrong (logged as warnings).
_BAD_STATES = frozenset({PilotState.FAILED, PilotState.ABORTED})
NO_REFERENCE_REASON = "no backend reference: the director stopped during submission"


@dataclass(frozen=True)
class QueueRuntime:
    config: QueueSection
    backend: Backend


@dataclass
class MonitorReport:
    updated: int = 0
    # Queue name -> error, for queues whose backend could not answer.
    errors: dict[str, str] = field(default_factory=dict)


def needs_update(central: PilotState, backend: PilotState) -> bool:
    """Whether the backend's view moves central's record forward (central is non-final)."""
    if backend == central:
        return False
    if backend in FINAL_PILOT_STATES or PilotState.UNKNOWN in (backend, central):
        return True
    return _RANK[backend] > _RANK[central]


def as_reported(status: BackendStatus) -> BackendStatus:
    """The backend state as central should record it. Running in central means *registered*
    (central sets it itself): a started pilot that has not registered has not taken a job yet,
    so it stays Waiting and keeps counting against demand and max_waiting -- a pilot that runs
    but never reaches central cannot cause a flood of replacements."""
    if status.state is PilotState.RUNNING:
        return replace(status, state=PilotState.WAITING)
    return status


def monitor_pilots(
    *,
    queues: Mapping[str, QueueRuntime],
    active: Sequence[KnownPilot],
    client: CentralClient,
    journal: Journal,
    now: float,
    log_cap_bytes: int,
    skip: frozenset[str] = frozenset(),
) -> MonitorReport:
    report = MonitorReport()
    active_ids = {p.pilot_id for p in active}
    for entry in journal.entries():
        if entry.pilot_id not in active_ids:
            journal.mark_final(entry.pilot_id, now)
    updates: list[PilotStateUpdate] = []
    by_queue: dict[str, list[tuple[KnownPilot, str]]] = defaultdict(list)
    # References central lacks but the journal has: sent with this cycle's updates.
    resend: dict[str, str] = {}
    for pilot in active:
        known = journal.get(pilot.pilot_id)
        reference = pilot.reference or (known.reference if known else "")
        if not reference:
            if pilot.state != PilotState.UNKNOWN:
                updates.append(
                    PilotStateUpdate(pilot.pilot_id, PilotState.UNKNOWN, NO_REFERENCE_REASON)
                )
            continue
        if not pilot.reference:
            resend[pilot.pilot_id] = reference
        if known is None or not known.reference:
            journal.add(pilot.pilot_id, pilot.queue, pilot.submitted, reference)
        by_queue[pilot.queue].append((pilot, reference))
    for queue_name, pilots in by_queue.items():
        runtime = queues.get(queue_name)
        if runtime is None or queue_name in skip:
            continue
        try:
            statuses = runtime.backend.status([ref for _, ref in pilots])
        except Exception as exc:
            # One broken backend must not stop the other queues' monitoring.
            report.errors[queue_name] = f"status: {type(exc).__name__}: {exc}"
            continue
        for pilot, reference in pilots:
            status = statuses.get(reference) or BackendStatus(
                PilotState.UNKNOWN, "unknown", reason="backend returned no status"
            )
            status = as_reported(status)
            if not needs_update(pilot.state, status.state):
                continue
            update = _update_for(runtime.backend, pilot, reference, status, log_cap_bytes)
            updates.append(replace(update, reference=resend.pop(pilot.pilot_id, "")))
            if status.state in FINAL_PILOT_STATES:
                journal.mark_final(pilot.pilot_id, now)
    _reconcile(queues, by_queue, skip, now)
    updates += [PilotStateUpdate(pid, None, reference=ref) for pid, ref in resend.items()]
    updates += late_logs(queues, journal, active_ids | skip_ids(journal, skip), log_cap_bytes)
    client.update_pilots(updates)
    # Central has them now: a log tail went with every final state and every late log.
    for update in updates:
        if update.state in FINAL_PILOT_STATES or update.log_tail or _is_late_log(update):
            journal.mark_log_sent(update.pilot_id)
    journal.save()
    report.updated = sum(u.state is not None for u in updates)
    return report


def _reconcile(
    queues: Mapping[str, QueueRuntime],
    by_queue: Mapping[str, list[tuple[KnownPilot, str]]],
    skip: frozenset[str],
    now: float,
) -> None:
    """Tell each backend which of its pilots central still counts as live (every queue, also
    those with none: a backend may hold resources of pilots that ended)."""
    for queue_name, runtime in queues.items():
        if queue_name in skip:
            continue
        live = [
            LivePilot(p.pilot_id, ref, p.state, p.submitted, p.registered, p.last_heartbeat)
            for p, ref in by_queue.get(queue_name, [])
        ]
        try:
            runtime.backend.reconcile(live, now)
        except Exception as exc:
            log.warning("pilots.reconcile_failed", queue=queue_name, error=str(exc))


def skip_ids(journal: Journal, skip: frozenset[str]) -> set[str]:
    return {e.pilot_id for e in journal.entries() if e.queue in skip}


def late_logs(
    queues: Mapping[str, QueueRuntime], journal: Journal, exclude: set[str], cap: int
) -> list[PilotStateUpdate]:
    """Log tails of pilots central already has as final (they reported their own end), taken
    once their backend sees them end too -- before that the log may still be growing. One
    update per such pilot (an empty tail too): the caller marks them sent once central has
    them."""
    by_queue: dict[str, list[JournalEntry]] = defaultdict(list)
    for entry in journal.entries():
        due = entry.final_at is not None and not entry.log_sent and bool(entry.reference)
        if due and entry.pilot_id not in exclude and entry.queue in queues:
            by_queue[entry.queue].append(entry)
    updates: list[PilotStateUpdate] = []
    for queue_name, entries in by_queue.items():
        backend = queues[queue_name].backend
        try:
            statuses = backend.status([e.reference for e in entries])
        except Exception as exc:
            log.debug("pilots.late_log_status_failed", queue=queue_name, error=str(exc))
            continue
        for entry in entries:
            status = statuses.get(entry.reference)
            if status is None or status.state not in FINAL_PILOT_STATES:
                continue
            tail = _log_tail(backend, entry.pilot_id, entry.reference, cap)
            updates.append(PilotStateUpdate(entry.pilot_id, None, log_tail=tail))
    return updates


def _is_late_log(update: PilotStateUpdate) -> bool:
    return update.state is None and not update.reference


def _log_tail(backend: Backend, pilot_id: str, reference: str, cap: int) -> str:
    try:
        return backend.fetch_output(reference, cap)
    except (BackendError, OSError, ValueError) as exc:
        log.debug("pilot.no_output", pilot_id=pilot_id, error=str(exc))
        return ""


def _update_for(
    backend: Backend, pilot: KnownPilot, reference: str, status: BackendStatus, cap: int
) -> PilotStateUpdate:
    log_tail = ""
    if status.state in FINAL_PILOT_STATES:
        log_tail = _log_tail(backend, pilot.pilot_id, reference, cap)
    level = log.warning if status.state in _BAD_STATES else log.info
    level(
        "pilot.state",
        pilot_id=pilot.pilot_id,
        queue=pilot.queue,
        old=pilot.state.value,
        new=status.state.value,
        native=status.native,
        exit_code=status.exit_code,
        reason=status.reason,
    )
    return PilotStateUpdate(pilot.pilot_id, status.state, status.reason, log_tail)


def cleanup_finished(
    *, queues: Mapping[str, QueueRuntime], journal: Journal, now: float, cleanup_after: float
) -> int:
    """Remove backend files of pilots final for `cleanup_after` seconds; returns how many
    journal entries were retired. Cleanup is best effort: a failure is logged, not retried."""
    due = [
        e for e in journal.entries() if e.final_at is not None and now - e.final_at >= cleanup_after
    ]
    if not due:
        return 0
    refs_by_queue: dict[str, list[str]] = defaultdict(list)
    for entry in due:
        if entry.reference and entry.queue in queues:
            refs_by_queue[entry.queue].append(entry.reference)
    for queue_name, refs in refs_by_queue.items():
        backend = queues[queue_name].backend
        try:
            backend.cleanup(refs)
        except BackendNotSupportedError:
            pass
        except Exception as exc:
            log.warning("pilots.cleanup_failed", queue=queue_name, error=str(exc))
    journal.remove(e.pilot_id for e in due)
    journal.save()
    return len(due)
