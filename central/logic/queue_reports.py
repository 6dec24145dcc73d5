"""Directors' reports on their queues: what operators see with `gridpilot admin queues`.

Each director cycle replaces the director's rows, so a queue whose submissions fail shows its
error (and how many cycles it still sits out) in central, next to the pilot records, without
anyone reading the director's log on the site's host.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from central.logic.access import check_sites
from central.logic.errors import InvalidArgumentError
from central.logic.identity import Caller
from central.store.interface import Store
from central.store.records import QueueStatusFilter, QueueStatusRecord

HEALTH_VALUES = frozenset({"ok", "failing", "disabled"})
# A report is small; a director sending more queues than this is misconfigured or hostile.
MAX_QUEUES_PER_REPORT = 1000
_MAX_ERROR_CHARS = 2000


async def report_queues(
    store: Store, caller: Caller, statuses: Sequence[QueueStatusRecord], now: float
) -> None:
    if len(statuses) > MAX_QUEUES_PER_REPORT:
        raise InvalidArgumentError(
            f"{len(statuses)} queues in one report (at most {MAX_QUEUES_PER_REPORT})"
        )
    for status in statuses:
        if not status.queue or not status.site:
            raise InvalidArgumentError("queue report without a queue name or site")
        if status.health not in HEALTH_VALUES:
            raise InvalidArgumentError(f"queue {status.queue!r}: no health given")
    check_sites(caller, [s.site for s in statuses], "report queues")
    # The director is who the token says, never what the request claims.
    await store.upsert_queue_statuses(
        [
            msgspec.structs.replace(
                s, director=caller.subject, error=s.error[:_MAX_ERROR_CHARS], reported=now
            )
            for s in statuses
        ]
    )


async def list_queues(
    store: Store, caller: Caller, site: str, director: str
) -> list[QueueStatusRecord]:
    where = QueueStatusFilter(site=site, director=director)
    if site:
        check_sites(caller, [site], "list queues")
    elif not caller.is_admin:
        where = msgspec.structs.replace(where, sites=caller.sites)
    return await store.list_queue_statuses(where)
