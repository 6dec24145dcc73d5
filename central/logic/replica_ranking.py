"""The order in which a job at a site should try a file's replicas, and why.

Pilot3 reads from the site's LAN SEs first, then the rest; DIRAC picks at random. Here:

1. the site's local SEs (its `local_ses`, or SEs of the site itself),
2. SEs with a known cost for the site, cheapest first: the learned cost (a moving average of
   the seconds per GB wrappers measured, seeded by the configured distance), else the
   configured distance,
3. SEs with no cost at all,
4. copies marked suspect (a reader found a bad checksum), as a last resort until checked.

SEs that may not be read now (an admin's switch, failed probes) are left out and listed as
skipped with the reason, which `gb2_replica_list` shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from central.config import CentralConfig
from central.logic.storage_elements import StorageElements
from central.store.records import FileRecord, StorageElementRecord


@dataclass(frozen=True, slots=True)
class RankedReplica:
    se: str
    url: str
    rank_reason: str
    # Estimated seconds per GB from the site (None: nothing known).
    cost: float | None = None


@dataclass(frozen=True, slots=True)
class FileReplicas:
    lfn: str
    size: int
    adler32: str
    replicas: list[RankedReplica]
    # Copies not to be read now, with the reason.
    skipped: list[RankedReplica] = field(default_factory=list)


def se_url(se: StorageElementRecord, lfn: str) -> str:
    """The same join as wrapper.se's StoragePlugin.url_for."""
    return se.url.rstrip("/") + "/" + lfn.lstrip("/")


def site_cost(
    site: str, se: str, config: CentralConfig, ses: StorageElements
) -> tuple[float, str] | None:
    """The site's cost of reading from the SE and how it is known; None when it is not."""
    learned = ses.learned_cost(site, se)
    if learned is not None and learned.samples + learned.failures > 0:
        failed = f", {learned.failures} failed" if learned.failures else ""
        return learned.cost, f"cost {learned.cost:.3g} s/GB ({learned.samples} transfers{failed})"
    distance = config.distances.get(site, {}).get(se)
    if distance is not None:
        return distance, f"distance {distance:g}"
    return None


def rank_file(
    file: FileRecord, site: str, config: CentralConfig, ses: StorageElements
) -> FileReplicas:
    site_cfg = config.site(site) if site else None
    local = set(site_cfg.local_ses) if site_cfg else set()
    ranked: list[tuple[tuple[int, float, int], RankedReplica]] = []
    skipped: list[RankedReplica] = []
    for position, name in enumerate(file.ses):
        se = ses.get(name)
        refusal = ses.read_refusal(name)
        url = se_url(se, file.lfn) if se is not None else ""
        if refusal is not None:
            skipped.append(RankedReplica(name, url, refusal))
            continue
        assert se is not None  # refusal is None only for known SEs
        known = site_cost(site, name, config, ses) if site else None
        cost, cost_reason = known if known is not None else (None, "")
        if name in file.suspects:
            tier, reason = 3, f"suspect: {file.suspects[name]}"
        elif not site:
            tier, reason = 0, "catalog order"
        elif name in local or se.site == site:
            tier, reason = 0, "local SE" + (f", {cost_reason}" if cost_reason else "")
        elif known is not None:
            tier, reason = 1, cost_reason
        else:
            tier, reason = 2, "no distance"
        order = cost if cost is not None and site else math.inf
        ranked.append(((tier, order, position), RankedReplica(name, url, reason, cost)))
    ranked.sort(key=lambda item: item[0])
    return FileReplicas(
        file.lfn, file.size, file.adler32, [replica for _, replica in ranked], skipped
    )


def best_writable_se(
    site: str, config: CentralConfig, ses: StorageElements, exclude: set[str]
) -> str | None:
    """The SE a job at `site` should write to when its usual one takes no writes: the site's
    own SEs first, then the cheapest by cost; never one in `exclude` (failover SEs)."""
    site_cfg = config.site(site)
    local = set(site_cfg.local_ses) if site_cfg else set()
    candidates: list[tuple[tuple[int, float, str], str]] = []
    for se in ses.all():
        if se.name in exclude or ses.write_refusal(se.name) is not None:
            continue
        known = site_cost(site, se.name, config, ses)
        tier = 0 if se.name in local or se.site == site else 1 if known else 2
        candidates.append(((tier, known[0] if known else math.inf, se.name), se.name))
    return min(candidates)[1] if candidates else None
