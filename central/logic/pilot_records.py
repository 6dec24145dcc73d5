"""Pilot records for site directors: record, update (never backwards), list, demand per queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from central.config import CentralConfig
from central.logic.errors import InvalidArgumentError
from central.matcher import Matcher, Resources
from central.models.pilot_states import (
    FINAL_PILOT_STATES,
    UNKNOWN_TO_ABORTED_SECONDS,
    PilotState,
)
from central.store.interface import Store
from central.store.records import PilotFilter, PilotRecord, PilotUpdate
from gridpilot.logs import get_logger

log = get_logger(__name__)

P = PilotState

# Submitted < Waiting < Running < final. Unknown is "the backend cannot tell": it may replace
# and be replaced by any non-final state.
_RANK: dict[PilotState, int] = {P.SUBMITTED: 0, P.WAITING: 1, P.RUNNING: 2}

# Log tails are kept for failed pilots; the cap keeps one bad pilot from bloating the store.
LOG_TAIL_MAX_CHARS = 64 * 1024


def pilot_state_allowed(old: PilotState, new: PilotState) -> bool:
    """May a pilot in `old` be moved to `new`? Never backwards, never out of a final state."""
    if old == new:
        return True
    if old in FINAL_PILOT_STATES:
        return False
    if new in FINAL_PILOT_STATES or P.UNKNOWN in (old, new):
        return True
    return _RANK[new] > _RANK[old]


def _cap(text: str) -> str:
    return text[-LOG_TAIL_MAX_CHARS:]


async def record_pilots(store: Store, pilots: Sequence[PilotRecord], now: float) -> None:
    for p in pilots:
        if not p.pilot_id:
            raise InvalidArgumentError("pilot record without a pilot id")
        if not p.site:
            raise InvalidArgumentError(f"pilot {p.pilot_id}: no site")
    await store.insert_pilots(
        [
            PilotRecord(
                pilot_id=p.pilot_id,
                reference=p.reference,
                site=p.site,
                ce=p.ce,
                queue=p.queue,
                backend=p.backend,
                director=p.director,
                state=p.state,
                submitted=p.submitted or now,
                status_reason=p.status_reason,
                log_tail=_cap(p.log_tail),
                state_changed=now,
            )
            for p in pilots
        ]
    )
    log.info("pilots.recorded", count=len(pilots))


async def update_pilots(store: Store, updates: Sequence[PilotUpdate]) -> int:
    """Apply the updates that move forward; returns how many state changes were refused.

    A refused state change still records the reason and log tail the director sent.
    """
    accepted: list[PilotUpdate] = []
    refused = 0
    for update in updates:
        current = await store.get_pilot(update.pilot_id)
        if current is None:
            continue
        state = update.state
        if state is not None and not pilot_state_allowed(current.state, state):
            refused += 1
            log.debug("pilot.state_refused", pilot_id=update.pilot_id, old=current.state, new=state)
            state = None
        accepted.append(
            PilotUpdate(
                pilot_id=update.pilot_id,
                time=update.time,
                state=state,
                status_reason=update.status_reason,
                log_tail=None if update.log_tail is None else _cap(update.log_tail),
                # The reference is a fact about the submission, accepted whatever the state.
                reference=update.reference or None,
            )
        )
    await store.update_pilots(accepted)
    return refused


async def list_pilots(store: Store, where: PilotFilter) -> list[PilotRecord]:
    return await store.list_pilots(where)


@dataclass(frozen=True, slots=True)
class QueueDemand:
    queue: str
    eligible_jobs: int
    pilots_submitted: int
    pilots_running: int
    pilots_idle: int
    blocked: bool


async def pilot_demand(
    store: Store,
    matcher: Matcher,
    config: CentralConfig,
    queues: Sequence[Resources],
    site_banned: Callable[[str], bool] | None = None,
) -> list[QueueDemand]:
    """Demand per queue; a banned site's queues are `blocked` (`site_banned` says whether a
    site is banned now; without it the configuration's flag decides)."""
    demands: list[QueueDemand] = []
    for q in queues:
        site = config.site(q.site)
        if site is None:
            raise InvalidArgumentError(f"unknown site {q.site!r}")
        blocked = site_banned(q.site) if site_banned else site.banned
        pilots = await store.list_pilots(
            PilotFilter(
                site=q.site,
                queue=q.queue,
                states=(P.SUBMITTED, P.WAITING, P.RUNNING, P.UNKNOWN),
            )
        )
        if q.ce:
            pilots = [p for p in pilots if p.ce == q.ce]
        running = [p for p in pilots if p.state == P.RUNNING]
        demands.append(
            QueueDemand(
                queue=q.queue,
                eligible_jobs=0 if blocked else matcher.count_eligible(q),
                pilots_submitted=sum(p.state in (P.SUBMITTED, P.WAITING) for p in pilots),
                pilots_running=len(running),
                pilots_idle=sum(p.idle_since is not None for p in running),
                blocked=blocked,
            )
        )
    return demands


async def abort_lost_pilots(store: Store, now: float) -> int:
    """Pilots Unknown for more than an hour are declared Aborted."""
    unknown = await store.list_pilots(PilotFilter(states=(P.UNKNOWN,)))
    cutoff = now - UNKNOWN_TO_ABORTED_SECONDS
    lost = [p for p in unknown if p.state_changed < cutoff]
    await store.update_pilots(
        [
            PilotUpdate(
                pilot_id=p.pilot_id,
                time=now,
                state=P.ABORTED,
                status_reason="state unknown for more than 1 h",
            )
            for p in lost
        ]
    )
    for p in lost:
        log.info("pilot.aborted", pilot_id=p.pilot_id, site=p.site)
    return len(lost)
