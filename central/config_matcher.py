"""The [matcher] section of central's configuration: fair share and limiters.

    [matcher]
    sharing_groups = ["belle_production"]

    [matcher.group_shares]
    belle_user = 3000
    belle_production = 1000

    [[matcher.running_limits]]
    site = "LCG.KEK.jp"
    attribute = "JobType"
    value = "User"
    limit = 500

    [[matcher.matching_delays]]
    site = "LCG.KEK.jp"
    attribute = "Owner"
    value = "alice"
    seconds = 2.0

This section alone can be reloaded without a restart (SIGHUP): see central/main.py.
"""

from __future__ import annotations

import msgspec

LIMIT_ATTRIBUTES = ("JobType", "Owner", "OwnerGroup")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RunningLimitSection(_Strict):
    site: str
    attribute: str
    value: str
    limit: int


class MatchingDelaySection(_Strict):
    site: str
    attribute: str
    value: str
    seconds: float


class MatcherSection(_Strict):
    # group -> share; groups not listed get the default share of 1000.
    group_shares: dict[str, float] = msgspec.field(default_factory=dict)
    # Groups whose owners share the group's share instead of splitting it.
    sharing_groups: list[str] = msgspec.field(default_factory=list)
    running_limits: list[RunningLimitSection] = msgspec.field(default_factory=list)
    matching_delays: list[MatchingDelaySection] = msgspec.field(default_factory=list)


def _rule_problems(
    where: str, rule: RunningLimitSection | MatchingDelaySection, known_sites: set[str]
) -> list[str]:
    problems: list[str] = []
    if rule.site not in known_sites:
        problems.append(f"{where}: unknown site {rule.site!r}")
    if rule.attribute not in LIMIT_ATTRIBUTES:
        problems.append(
            f"{where}: attribute {rule.attribute!r} is not one of {', '.join(LIMIT_ATTRIBUTES)}"
        )
    if not rule.value:
        problems.append(f"{where}: value is empty")
    return problems


def matcher_problems(
    section: MatcherSection, known_sites: set[str], known_groups: set[str]
) -> list[str]:
    """Everything wrong with the section, each naming its field; empty when valid."""
    problems: list[str] = []
    for group, share in section.group_shares.items():
        if group not in known_groups:
            problems.append(f"matcher.group_shares: unknown group {group!r}")
        if share < 0:
            problems.append(f"matcher.group_shares.{group}: share must not be negative")
    for group in section.sharing_groups:
        if group not in known_groups:
            problems.append(f"matcher.sharing_groups: unknown group {group!r}")
    seen: set[tuple[str, str, str]] = set()
    for i, limit in enumerate(section.running_limits):
        problems.extend(_rule_problems(f"matcher.running_limits[{i}]", limit, known_sites))
        if limit.limit < 0:
            problems.append(f"matcher.running_limits[{i}]: limit must not be negative")
        key = (limit.site, limit.attribute, limit.value)
        if key in seen:
            problems.append(f"matcher.running_limits[{i}]: duplicate rule for {key}")
        seen.add(key)
    seen.clear()
    for i, delay in enumerate(section.matching_delays):
        problems.extend(_rule_problems(f"matcher.matching_delays[{i}]", delay, known_sites))
        if delay.seconds <= 0:
            problems.append(f"matcher.matching_delays[{i}]: seconds must be positive")
        key = (delay.site, delay.attribute, delay.value)
        if key in seen:
            problems.append(f"matcher.matching_delays[{i}]: duplicate rule for {key}")
        seen.add(key)
    return problems
