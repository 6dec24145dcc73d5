"""Each site's cost of reading from each SE, learned from the transfers wrappers measure.

The cost is an estimate of seconds per GB. It starts from the configured distance
(`[distances]`, in the same unit) and moves towards what transfers show: a moving average
with weight `storage.cost_alpha` for each new transfer of at least `storage.cost_min_bytes`
(a smaller one measures latency more than rate). A failed transfer counts as
`storage.failure_cost_factor` times the current cost, so an SE that fails from a site drifts
down the ranking there without being ruled out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from central.config import CentralConfig, StorageSection
from central.logic.storage_elements import StorageElements
from central.store.interface import Store
from central.store.records import SECostRecord
from gridpilot.logs import get_logger

log = get_logger(__name__)

# Seconds per GB assumed for a failure where nothing better is known (1 MB/s).
UNKNOWN_FAILURE_COST = 1000.0
DIRECTIONS = ("read", "write")


@dataclass(frozen=True)
class Transfer:
    se: str
    direction: str
    bytes: int
    seconds: float
    ok: bool


def seconds_per_gb(transfer: Transfer) -> float:
    return max(transfer.seconds, 0.0) / (transfer.bytes / 1e9)


def learn(
    current: SECostRecord | None,
    seed: float | None,
    transfer: Transfer,
    settings: StorageSection,
    *,
    site: str,
    now: float,
) -> SECostRecord | None:
    """The cost after one more transfer; None when the transfer teaches nothing."""
    base = current.cost if current is not None else seed
    samples = current.samples if current is not None else 0
    failures = current.failures if current is not None else 0
    if transfer.ok:
        if transfer.bytes < max(settings.cost_min_bytes, 1):
            return None
        sample = seconds_per_gb(transfer)
        samples += 1
    else:
        sample = settings.failure_cost_factor * (base if base else UNKNOWN_FAILURE_COST)
        failures += 1
    cost = (
        sample if base is None else (1 - settings.cost_alpha) * base + settings.cost_alpha * sample
    )
    return SECostRecord(
        site=site, se=transfer.se, cost=cost, samples=samples, failures=failures, updated=now
    )


async def record_transfers(
    store: Store,
    ses: StorageElements,
    config: CentralConfig,
    *,
    site: str,
    transfers: Iterable[Transfer],
    now: float,
) -> list[SECostRecord]:
    """Fold a job's transfers into its site's costs; the changed costs."""
    changed: dict[str, SECostRecord] = {}
    distances = config.distances.get(site, {})
    for transfer in transfers:
        if ses.get(transfer.se) is None or transfer.direction not in DIRECTIONS:
            continue
        current = changed.get(transfer.se) or ses.learned_cost(site, transfer.se)
        updated = learn(
            current, distances.get(transfer.se), transfer, config.storage, site=site, now=now
        )
        if updated is not None:
            changed[transfer.se] = updated
    records: Sequence[SECostRecord] = list(changed.values())
    if records:
        await store.put_se_costs(records)
        ses.set_costs(records)
        for r in records:
            log.info(
                "se.cost_learned", site=site, se=r.se, cost=round(r.cost, 3), samples=r.samples
            )
    return list(records)
