"""Central's configuration: one TOML file, validated at start with errors that name the field.

    [central]
    listen = "127.0.0.1:50051"
    data_dir = "/var/lib/gridpilot"

    [[sites]]
    name = "LCG.KEK.jp"
    local_ses = ["KEK-SE"]
    default_output_se = "KEK-SE"
    [[sites.ces]]
    name = "ce01.kek.jp"
    queues = ["long"]

    [[storage_elements]]
    name = "KEK-SE"
    site = "LCG.KEK.jp"
    url = "file:///data/kek-se"

    [distances."LCG.KEK.jp"]
    "DESY-SE" = 10

    [failover]
    ses = ["FAILOVER-SE"]

    [storage]                 # SE probes and learned costs (StorageSection)
    probe_period = 600

Security settings ([security], [[groups]], [[users]]) are in central/config_security.py.
The full reference is in README.md ("Configuration").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from central.config_matcher import (
    MatcherSection,
    MatchingDelaySection,
    RunningLimitSection,
    matcher_problems,
)
from central.config_security import (
    ExternalIssuerSection,
    GroupSection,
    SecuritySection,
    UserSection,
    default_groups,
    security_problems,
    serving_problems,
)
from gridpilot.config_files import ConfigError, convert_config, load_config_file
from wrapper.se import known_schemes

__all__ = [
    "CESection",
    "CentralConfig",
    "CentralSection",
    "ConfigError",
    "ExternalIssuerSection",
    "FailoverSection",
    "GroupSection",
    "MatcherSection",
    "MatchingDelaySection",
    "RunningLimitSection",
    "SecuritySection",
    "SiteSection",
    "StorageElementSection",
    "StorageSection",
    "UserSection",
    "check_serving",
    "config_from_dict",
    "load_config",
]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class CentralSection(_Strict):
    listen: str = "127.0.0.1:50051"
    data_dir: str = "./gridpilot-data"
    # Seconds between pilot heartbeats (told to pilots at registration).
    heartbeat_period: float = 30.0
    # A Matched/Running job with no heartbeat for this long goes Stalled.
    stalled_after: float = 300.0
    # A Stalled job with still no heartbeat after this long is rescheduled.
    reschedule_stalled_after: float = 300.0
    max_rescheduling: int = 3
    sandbox_max_bytes: int = 10_000_000
    # How often the periodic agents run, in seconds.
    stalled_check_period: float = 30.0
    failover_period: float = 30.0
    failover_max_attempts: int = 100
    log_level: str = "INFO"


class CESection(_Strict):
    name: str
    queues: list[str] = msgspec.field(default_factory=list)


class SiteSection(_Strict):
    name: str
    ces: list[CESection] = msgspec.field(default_factory=list)
    local_ses: list[str] = msgspec.field(default_factory=list)
    default_output_se: str = ""
    banned: bool = False


class StorageElementSection(_Strict):
    name: str
    site: str
    url: str
    read: bool = True
    write: bool = True


class FailoverSection(_Strict):
    ses: list[str] = msgspec.field(default_factory=list)


class StorageSection(_Strict):
    """SE health probes (like Belle II's StorageElementStatusAgent) and learned SE costs."""

    # Seconds between probes of every SE (write, read, checksum, delete a small file);
    # 0 turns probing off.
    probe_period: float = 600.0
    # Failed probes in a row after which an SE is unavailable (until a probe passes again).
    probe_failures: int = 3
    # Where probe files go on each SE (an LFN directory).
    probe_dir: str = "/gridpilot/probes"
    probe_bytes: int = 65536
    # A probe that takes longer than this (seconds) has failed.
    probe_timeout: float = 120.0
    # An SE that reports more than this fraction of its space used takes no new writes.
    full_threshold: float = 0.95
    # Weight of a new measurement in the moving average of an SE's cost (seconds per GB).
    cost_alpha: float = 0.3
    # Smaller transfers measure latency more than rate: they teach nothing.
    cost_min_bytes: int = 1_000_000
    # A failed transfer counts as this many times the current cost.
    failure_cost_factor: float = 4.0


class CentralConfig(_Strict):
    central: CentralSection = msgspec.field(default_factory=CentralSection)
    sites: list[SiteSection] = msgspec.field(default_factory=list)
    storage_elements: list[StorageElementSection] = msgspec.field(default_factory=list)
    # site -> SE -> cost (lower is nearer). SEs local to a site need no entry.
    distances: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    failover: FailoverSection = msgspec.field(default_factory=FailoverSection)
    storage: StorageSection = msgspec.field(default_factory=StorageSection)
    security: SecuritySection = msgspec.field(default_factory=SecuritySection)
    # Empty means the defaults: belle_user (user), belle_production, belle_admin.
    groups: list[GroupSection] = msgspec.field(default_factory=list)
    users: list[UserSection] = msgspec.field(default_factory=list)
    # Fair share and limiters; reloadable without a restart.
    matcher: MatcherSection = msgspec.field(default_factory=MatcherSection)

    def site(self, name: str) -> SiteSection | None:
        return next((s for s in self.sites if s.name == name), None)

    def effective_groups(self) -> list[GroupSection]:
        return self.groups or default_groups()

    def group(self, name: str) -> GroupSection | None:
        return next((g for g in self.effective_groups() if g.name == name), None)

    def user(self, name: str) -> UserSection | None:
        return next((u for u in self.users if u.name == name), None)

    def user_by_subject(self, subject: str) -> UserSection | None:
        """The user whose client certificate has this CN."""
        return next((u for u in self.users if u.cert_subject == subject), None)

    def storage_element(self, name: str) -> StorageElementSection | None:
        return next((s for s in self.storage_elements if s.name == name), None)


def _storage_problems(st: StorageSection) -> list[str]:
    problems = []
    if st.probe_period < 0:
        problems.append("storage.probe_period must not be negative (0 = no probes)")
    if st.probe_failures < 1:
        problems.append("storage.probe_failures must be at least 1")
    if not st.probe_dir.startswith("/") or st.probe_dir.rstrip("/") == "":
        problems.append(f"storage.probe_dir must be an LFN directory, got {st.probe_dir!r}")
    if st.probe_bytes <= 0:
        problems.append("storage.probe_bytes must be positive")
    if st.probe_timeout <= 0:
        problems.append("storage.probe_timeout must be positive")
    if not 0 < st.full_threshold <= 1:
        problems.append("storage.full_threshold must be in (0, 1]")
    if not 0 < st.cost_alpha <= 1:
        problems.append("storage.cost_alpha must be in (0, 1]")
    if st.cost_min_bytes < 0:
        problems.append("storage.cost_min_bytes must not be negative")
    if st.failure_cost_factor < 1:
        problems.append("storage.failure_cost_factor must be at least 1")
    return problems


def _validate(cfg: CentralConfig) -> None:
    problems: list[str] = []
    site_names = [s.name for s in cfg.sites]
    se_names = [s.name for s in cfg.storage_elements]
    for kind, names in (("site", site_names), ("storage element", se_names)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"duplicate {kind} name(s): {', '.join(dupes)}")
    known_sites, known_ses = set(site_names), set(se_names)
    for se in cfg.storage_elements:
        if se.site not in known_sites:
            problems.append(f"storage element {se.name!r} names unknown site {se.site!r}")
        scheme, sep, rest = se.url.partition("://")
        if not sep or scheme not in known_schemes() or not rest:
            supported = ", ".join(f"{s}://" for s in known_schemes())
            problems.append(
                f"storage element {se.name!r} has unsupported URL {se.url!r} "
                f"(supported: {supported})"
            )
    for site in cfg.sites:
        named = [*site.local_ses, *([site.default_output_se] if site.default_output_se else [])]
        for se_name in named:
            if se_name not in known_ses:
                problems.append(f"site {site.name!r} names unknown storage element {se_name!r}")
    for site_name, row in cfg.distances.items():
        if site_name not in known_sites:
            problems.append(f"distances: unknown site {site_name!r}")
        for se_name, cost in row.items():
            if se_name not in known_ses:
                problems.append(f"distances.{site_name}: unknown storage element {se_name!r}")
            if cost < 0:
                problems.append(f"distances.{site_name}.{se_name}: negative distance {cost}")
    for se_name in cfg.failover.ses:
        if se_name not in known_ses:
            problems.append(f"failover.ses: unknown storage element {se_name!r}")
    c = cfg.central
    for field in (
        "heartbeat_period",
        "stalled_after",
        "reschedule_stalled_after",
        "stalled_check_period",
        "failover_period",
    ):
        if getattr(c, field) <= 0:
            problems.append(f"central.{field} must be positive")
    if c.stalled_after <= c.heartbeat_period:
        problems.append("central.stalled_after must be longer than central.heartbeat_period")
    if c.sandbox_max_bytes <= 0:
        problems.append("central.sandbox_max_bytes must be positive")
    if c.max_rescheduling < 0:
        problems.append("central.max_rescheduling must not be negative")
    problems.extend(_storage_problems(cfg.storage))
    problems.extend(security_problems(cfg.security, cfg.effective_groups(), cfg.users))
    problems.extend(
        matcher_problems(cfg.matcher, known_sites, {g.name for g in cfg.effective_groups()})
    )
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def config_from_dict(data: dict[str, Any]) -> CentralConfig:
    cfg = convert_config(data, CentralConfig)
    _validate(cfg)
    return cfg


def check_serving(cfg: CentralConfig) -> None:
    """Raise ConfigError naming what central lacks to serve (TLS files unless insecure)."""
    problems = serving_problems(cfg.security)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def load_config(path: Path) -> CentralConfig:
    return load_config_file(path, config_from_dict)
