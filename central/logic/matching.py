"""Keeping the matcher in step with the store: restart, policy (re)loads, released slots.

The matcher counts a job as holding a slot at its site from the moment it matches it; the
store tells which committed transitions took a job out of the active states (whichever code
path applied them), and each such slot is released exactly once here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from central.config_matcher import MatcherSection
from central.matcher import Matcher, decode_requirements
from central.matcher.policy import MatcherPolicy
from central.store.interface import Store
from central.store.records import ActiveSlot
from gridpilot.logs import get_logger

log = get_logger(__name__)


def matcher_policy(section: MatcherSection) -> MatcherPolicy:
    """The matcher's policy from a validated [matcher] section (same field names)."""
    try:
        return msgspec.convert(msgspec.to_builtins(section), MatcherPolicy)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid [matcher] section: {exc}") from exc


def apply_policy(matcher: Matcher, section: MatcherSection, reason: str) -> None:
    matcher.configure(matcher_policy(section))
    log.info(
        "matcher.configured",
        reason=reason,
        group_shares=len(section.group_shares),
        sharing_groups=len(section.sharing_groups),
        running_limits=len(section.running_limits),
        matching_delays=len(section.matching_delays),
    )


class SlotReleaser:
    """The store's release listener: hands every released slot to the matcher."""

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher
        self.released = 0

    def __call__(self, slots: Sequence[ActiveSlot]) -> None:
        for site, job_type, owner, group in slots:
            self._matcher.release(site, job_type, owner, group)
        self.released += len(slots)


async def restore_matcher(store: Store, matcher: Matcher, section: MatcherSection) -> int:
    """Rebuild the matcher from the store at start; returns the number of waiting jobs.

    Requirements are decoded once per task queue, never per job, so a million waiting jobs
    restart in seconds."""
    started = time.monotonic()
    rows, blobs = await store.waiting_jobs_compact()
    queues = {tq_id: decode_requirements(blob) for tq_id, blob in blobs.items()}
    matcher.rebuild_compact(rows, queues)
    running = await store.running_jobs_for_limits()
    matcher.load_running(running)
    apply_policy(matcher, section, reason="start")
    store.set_release_listener(SlotReleaser(matcher))
    log.info(
        "matcher.restored",
        waiting_jobs=len(rows),
        task_queues=len(queues),
        running_slots=len(running),
        seconds=round(time.monotonic() - started, 3),
    )
    return len(rows)
