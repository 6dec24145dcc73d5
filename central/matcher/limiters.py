"""RunningLimit and MatchingDelay, held once per matcher (so per process), not per request.

Counts are kept for every (site, attribute, value) the matcher hands out, whether a limit is
configured or not, so a limit added by a reload applies at once to jobs already running.
"""

from __future__ import annotations

from collections.abc import Iterable

from central.matcher.policy import MatcherPolicy

# (site, attribute, value)
LimitKey = tuple[str, str, str]


def _keys(site: str, job_type: str, owner: str, group: str) -> tuple[LimitKey, ...]:
    return ((site, "JobType", job_type), (site, "Owner", owner), (site, "OwnerGroup", group))


class Limiters:
    def __init__(self) -> None:
        self._limits: dict[LimitKey, int] = {}
        self._delays: dict[LimitKey, float] = {}
        self._limited_sites: frozenset[str] = frozenset()
        self._running: dict[LimitKey, int] = {}
        self._last_match: dict[LimitKey, float] = {}

    def configure(self, policy: MatcherPolicy) -> None:
        self._limits = {(r.site, r.attribute, r.value): r.limit for r in policy.running_limits}
        self._delays = {(d.site, d.attribute, d.value): d.seconds for d in policy.matching_delays}
        self._limited_sites = frozenset(k[0] for k in (*self._limits, *self._delays))

    def site_limited(self, site: str) -> bool:
        """False for the common case of a site without any limiter: the fast path."""
        return site in self._limited_sites

    @property
    def has_delays(self) -> bool:
        return bool(self._delays)

    def blocked(self, site: str, job_type: str, owner: str, group: str, now: float) -> bool:
        """Whether a job with these attributes may not be matched at `site` now."""
        for key in (
            (site, "JobType", job_type),
            (site, "Owner", owner),
            (site, "OwnerGroup", group),
        ):
            limit = self._limits.get(key)
            if limit is not None and self._running.get(key, 0) >= limit:
                return True
            delay = self._delays.get(key)
            if delay is not None:
                last = self._last_match.get(key)
                if last is not None and now - last < delay:
                    return True
        return False

    def matched(self, site: str, job_type: str, owner: str, group: str, now: float) -> None:
        running = self._running
        delays = self._delays
        for key in (
            (site, "JobType", job_type),
            (site, "Owner", owner),
            (site, "OwnerGroup", group),
        ):
            running[key] = running.get(key, 0) + 1
            if key in delays:
                self._last_match[key] = now

    def release(self, site: str, job_type: str, owner: str, group: str) -> None:
        running = self._running
        for key in (
            (site, "JobType", job_type),
            (site, "Owner", owner),
            (site, "OwnerGroup", group),
        ):
            count = running.get(key, 0) - 1
            if count > 0:
                running[key] = count
            else:
                # Never below zero: a release for a job counted before a restart is harmless.
                running.pop(key, None)

    def load_running(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        self._running.clear()
        for site, job_type, owner, group in rows:
            running = self._running
            for key in _keys(site, job_type, owner, group):
                running[key] = running.get(key, 0) + 1

    def running(self, site: str, attribute: str, value: str) -> int:
        return self._running.get((site, attribute, value), 0)
