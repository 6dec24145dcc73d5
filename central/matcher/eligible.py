"""Which task queues a pilot can serve, grouped for fair share.

Computed through the site index (queues naming the pilot's site plus any-site queues) and tag
bitsets, then memoised per distinct resource description: pilots of one CE queue share one.
"""

from __future__ import annotations

from central.matcher.lanes import TaskQueue
from central.matcher.policy import MatcherPolicy
from central.matcher.requirements import Requirements, Resources


def queue_matches(req: Requirements, resources: Resources, tags: frozenset[str]) -> bool:
    """DIRAC's rule: enough CPU time, site allowed and not banned, platform, every tag offered."""
    if resources.cpu_time_left < req.cpu_time:
        return False
    if req.sites and resources.site not in req.sites:
        return False
    if resources.site in req.banned_sites:
        return False
    if req.platform and req.platform != resources.platform:
        return False
    return all(tag in tags for tag in req.tags)


class GroupCandidates:
    """One group's eligible queues: one bucket per owner (or a single bucket for a group whose
    owners share its share), and the group's weight."""

    __slots__ = ("buckets", "name", "weight")

    def __init__(self, name: str, weight: float, buckets: list[list[TaskQueue]]) -> None:
        self.name = name
        self.weight = weight
        self.buckets = buckets


class Eligible:
    __slots__ = ("groups", "queues", "total_weight")

    def __init__(self, queues: list[TaskQueue], groups: list[GroupCandidates]) -> None:
        self.queues = queues
        self.groups = groups
        self.total_weight = sum(g.weight for g in groups)


def build_eligible(
    candidates: list[TaskQueue],
    resources: Resources,
    tag_bits: int,
    banned_owners: frozenset[str],
    policy: MatcherPolicy,
) -> Eligible:
    """Filter the index's candidates (already restricted by site) down to what fits."""
    site = resources.site
    cpu = resources.cpu_time_left
    platform = resources.platform
    missing_bits = ~tag_bits
    queues: list[TaskQueue] = []
    by_group: dict[str, dict[str, list[TaskQueue]]] = {}
    for queue in candidates:
        key = queue.key
        if (
            key.cpu_time > cpu
            or site in key.banned_sites
            or (key.platform and key.platform != platform)
            or queue.tag_bits & missing_bits
            or key.owner in banned_owners
        ):
            continue
        queues.append(queue)
        owner = "" if key.group in policy.sharing_groups else key.owner
        by_group.setdefault(key.group, {}).setdefault(owner, []).append(queue)
    groups = [
        GroupCandidates(group, max(policy.share(group), 0.0), list(owners.values()))
        for group, owners in by_group.items()
    ]
    return Eligible(queues, groups)
