"""The matcher's policy: fair-share weights and limiters, reloadable at any time."""

from __future__ import annotations

from typing import Literal

import msgspec

DEFAULT_SHARE = 1000.0

# The job attributes a limiter can key on (DIRAC's RunningLimit/MatchingDelay attributes).
LimitAttribute = Literal["JobType", "Owner", "OwnerGroup"]
LIMIT_ATTRIBUTES: tuple[LimitAttribute, ...] = ("JobType", "Owner", "OwnerGroup")


class RunningLimit(msgspec.Struct, frozen=True, kw_only=True):
    """At most `limit` active (matched..completing) jobs with attribute == value at site."""

    site: str
    attribute: LimitAttribute
    value: str
    limit: int


class MatchingDelay(msgspec.Struct, frozen=True, kw_only=True):
    """At most one match of a job with attribute == value at site per `seconds`."""

    site: str
    attribute: LimitAttribute
    value: str
    seconds: float


class MatcherPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Group shares (default DEFAULT_SHARE) are split among a group's owners unless the group
    is in `sharing_groups`, whose owners draw from one common pool."""

    group_shares: dict[str, float] = msgspec.field(default_factory=dict)
    sharing_groups: frozenset[str] = frozenset()
    running_limits: list[RunningLimit] = msgspec.field(default_factory=list)
    matching_delays: list[MatchingDelay] = msgspec.field(default_factory=list)

    def share(self, group: str) -> float:
        return self.group_shares.get(group, DEFAULT_SHARE)

    def validate(self) -> None:
        """Raise ValueError on a policy that cannot be applied."""
        for group, share in self.group_shares.items():
            if share < 0:
                raise ValueError(f"group share of {group!r} is negative: {share}")
        for limit in self.running_limits:
            if limit.attribute not in LIMIT_ATTRIBUTES:
                raise ValueError(f"unknown running-limit attribute {limit.attribute!r}")
            if limit.limit < 0:
                raise ValueError(f"running limit for {limit.site}/{limit.value} is negative")
        for delay in self.matching_delays:
            if delay.attribute not in LIMIT_ATTRIBUTES:
                raise ValueError(f"unknown matching-delay attribute {delay.attribute!r}")
            if delay.seconds < 0:
                raise ValueError(f"matching delay for {delay.site}/{delay.value} is negative")
