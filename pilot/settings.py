"""Everything a Pilot is told at start (the command line maps one to one onto this)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from gridpilot.channel import ClientSecurity, MutableToken
from pilot.node import NodeLimits


@dataclass(frozen=True)
class PilotSettings:
    central: str
    site: str
    work_dir: Path
    # Given by the site director; empty for a pilot started by hand (central assigns one).
    pilot_id: str = ""
    ce: str = ""
    queue: str = ""
    # None: measured on the node (cores of the affinity mask, memory incl. cgroup limit).
    slots: int | None = None
    memory_mb: int | None = None
    # Seconds the batch slot offers, counted from the pilot's start.
    cpu_time: int = 86400
    # None: detected ("x86_64-debian12").
    platform: str | None = None
    tags: tuple[str, ...] = ()
    # Stop after this long with nothing running and no match.
    idle_timeout: float = 600.0
    # 0 = unlimited.
    max_jobs: int = 0
    software_setup: str | None = None
    # None: the period central gives at registration.
    heartbeat_period: float | None = None
    # SIGTERM → SIGKILL delay when killing a job's process tree.
    kill_grace: float = 10.0
    # Polling an empty matcher: capped exponential back-off.
    match_backoff_initial: float = 1.0
    match_backoff_max: float = 30.0
    # Retrying transient gRPC errors and reopening the session stream.
    retry_backoff_initial: float = 1.0
    retry_backoff_max: float = 30.0
    rpc_timeout: float = 30.0
    # Give up (exit CENTRAL_UNREACHABLE) when central stays unreachable this long while
    # nothing runs; with payloads running the pilot keeps trying for them.
    unreachable_timeout: float = 600.0
    # How long final reports may take once the pilot is ending (batch systems SIGKILL soon
    # after SIGTERM).
    final_report_timeout: float = 60.0
    # Seconds between resource samples of running jobs (None: min(heartbeat, 10 s)).
    sample_period: float | None = None
    # Pass the slot's remaining time to wrappers as --wall-limit.
    pass_wall_limit: bool = True
    node_limits: NodeLimits = field(default_factory=NodeLimits)
    wrapper_python: str = sys.executable
    wrapper_module: str = "wrapper"
    # The CA that signed central's certificate (None only with insecure: plaintext).
    ca: Path | None = None
    insecure: bool = False
    # The single-use token the site director minted for this pilot; never logged.
    registration_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        problems = []
        if ":" not in self.central:
            problems.append(f"central must be HOST:PORT (got {self.central!r})")
        if not self.site:
            problems.append("site must not be empty")
        if self.slots is not None and self.slots < 1:
            problems.append(f"slots must be at least 1 (got {self.slots})")
        if self.memory_mb is not None and self.memory_mb < 1:
            problems.append(f"memory_mb must be positive (got {self.memory_mb})")
        if self.cpu_time <= 0:
            problems.append(f"cpu_time must be positive (got {self.cpu_time})")
        if self.max_jobs < 0:
            problems.append(f"max_jobs must not be negative (got {self.max_jobs})")
        for name in ("idle_timeout", "kill_grace", "rpc_timeout", "unreachable_timeout"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.heartbeat_period is not None and self.heartbeat_period <= 0:
            problems.append("heartbeat_period must be positive")
        if self.ca is None and not self.insecure:
            problems.append("a CA certificate (--ca) is needed to verify central, or --insecure")
        if not self.registration_token:
            problems.append("no registration token (--token-file, given by the site director)")
        if problems:
            raise ValueError("invalid pilot settings: " + "; ".join(problems))

    def security(self) -> ClientSecurity:
        """TLS towards central and a token source that starts as the registration token."""
        return ClientSecurity.from_options(
            ca=self.ca, insecure=self.insecure, token=MutableToken(self.registration_token)
        )
