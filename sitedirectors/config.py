"""The site director's configuration: one TOML file, validated at start; errors name the field.

[director]
name = "kek-director"            # recorded with every pilot; pilots are tracked per name
central = "central.example:50051"
cycle_period = 60.0              # seconds between cycles
work_dir = "/var/lib/gridpilot-director"   # journal, local pilot directories
failing_queue_skip_cycles = 5    # a queue whose submission failed sits out this many cycles
log_cap_bytes = 65536            # tail of a failed pilot's log sent to central
cleanup_after = 86400.0          # seconds a finished pilot's files are kept
rpc_timeout = 30.0               # deadline of each call to central
log_level = "INFO"
ca = "/etc/gridpilot/ca.pem"     # CA that signed central's certificate (also given to pilots)
token_file = "/etc/gridpilot/director.token"   # this director's site_director token (0600)
insecure = false                 # plaintext to central: tests only, logs a warning
pilot_bundle = ""                # pilot bundle for remote worker nodes (`gridpilot admin
                                 # bundle build`); needed by every backend but "local"

[[queues]]
name = "kek-long"                # unique; central's queue name
site = "LCG.KEK.jp"
ce = "ce01.kek.jp"
backend = "local"                # a name in sitedirectors.registry
enabled = true
max_waiting = 10                 # pilots submitted but not yet running
max_total = 100                  # waiting + running pilots
max_per_cycle = 20
ramp_up = 1.0                    # at most ramp_up x (pilots present) new pilots a cycle...
ramp_up_step = 5                 # ...but at least this many (0 factor + step = linear)
slots = 1                        # cores per pilot
memory_mb = 2000
cpu_time = 86400                 # CPU seconds a pilot slot offers
platform = "EL9"
tags = ["GPU"]

[queues.pilot]
central = ""                     # central as pilots reach it; empty = director.central
idle_timeout = 300.0             # a pilot finding no job this long exits
max_jobs = 0                     # 0 = no limit
software_setup = ""              # template handed to the pilot (--software-setup)
command = []                     # pilot command; empty = [<this python>, "-m", "pilot"]
extra_args = []                  # appended to the pilot command
environment = {}                 # extra environment for the pilot
token_lifetime = 0.0             # registration token lifetime (s) for pilots that wait in a
                                 # batch queue; 0 = central's default (600 s)

[queues.backend_options]         # free-form; validated by the backend itself
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from gridpilot.config_files import ConfigError, convert_config, load_config_file


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class DirectorSection(_Strict):
    name: str
    central: str
    cycle_period: float = 60.0
    work_dir: str = "./gridpilot-director"
    failing_queue_skip_cycles: int = 5
    log_cap_bytes: int = 64 * 1024
    cleanup_after: float = 86400.0
    # Deadline of each call to central, in seconds.
    rpc_timeout: float = 30.0
    log_level: str = "INFO"
    # The CA that signed central's certificate; pilots get it too (--ca).
    ca: str = ""
    # This director's site_director token (from `gridpilot admin service-token` or the
    # offline `gridpilot admin token issue`); re-read when replaced.
    token_file: str = ""
    insecure: bool = False
    # The pilot bundle (`gridpilot admin bundle build`) backends ship to worker nodes.
    pilot_bundle: str = ""


class PilotSection(_Strict):
    # Central's address as the pilots reach it; empty = director.central.
    central: str = ""
    idle_timeout: float = 300.0
    max_jobs: int = 0
    software_setup: str = ""
    command: list[str] = msgspec.field(default_factory=list)
    extra_args: list[str] = msgspec.field(default_factory=list)
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    # How long a pilot's registration token stays valid (a pilot may wait in a batch queue
    # before it starts); 0 = central's default, central caps it.
    token_lifetime: float = 0.0


class QueueSection(_Strict):
    name: str
    site: str
    ce: str
    backend: str = "local"
    enabled: bool = True
    max_waiting: int = 10
    max_total: int = 100
    max_per_cycle: int = 10
    ramp_up: float = 1.0
    ramp_up_step: int = 5
    slots: int = 1
    memory_mb: int = 2000
    cpu_time: int = 86400
    platform: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    pilot: PilotSection = msgspec.field(default_factory=PilotSection)
    backend_options: dict[str, Any] = msgspec.field(default_factory=dict)


class DirectorConfig(_Strict):
    director: DirectorSection
    queues: list[QueueSection] = msgspec.field(default_factory=list)

    def queue(self, name: str) -> QueueSection | None:
        return next((q for q in self.queues if q.name == name), None)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _validate_director(d: DirectorSection, problems: list[str]) -> None:
    if not d.name.strip():
        problems.append("director.name must not be empty")
    host, sep, port = d.central.rpartition(":")
    if not sep or not host or not port.isdigit():
        problems.append(f"director.central must be host:port, got {d.central!r}")
    for field in ("cycle_period", "cleanup_after", "rpc_timeout"):
        if getattr(d, field) <= 0:
            problems.append(f"director.{field} must be positive")
    if d.failing_queue_skip_cycles < 0:
        problems.append("director.failing_queue_skip_cycles must not be negative")
    if d.log_level.upper() not in _LOG_LEVELS:
        problems.append(f"director.log_level must be one of {', '.join(_LOG_LEVELS)}")
    if d.log_cap_bytes <= 0:
        problems.append("director.log_cap_bytes must be positive")
    if not d.token_file.strip():
        problems.append("director.token_file must name the director's token file")
    if not d.insecure and not d.ca.strip():
        problems.append("director.ca must name the CA certificate of central (or insecure = true)")


def _validate_queue(q: QueueSection, problems: list[str]) -> None:
    where = f"queues[{q.name}]"
    for field in ("name", "site", "ce", "backend"):
        if not getattr(q, field).strip():
            problems.append(f"{where}.{field} must not be empty")
    for field in ("max_waiting", "max_total", "max_per_cycle", "ramp_up_step", "cpu_time"):
        if getattr(q, field) < 0:
            problems.append(f"{where}.{field} must not be negative")
    for field in ("slots", "memory_mb"):
        if getattr(q, field) <= 0:
            problems.append(f"{where}.{field} must be positive")
    if q.ramp_up < 0:
        problems.append(f"{where}.ramp_up must not be negative")
    if q.ramp_up == 0 and q.ramp_up_step == 0:
        problems.append(f"{where}: ramp_up and ramp_up_step are both 0 (no pilot could start)")
    if q.max_waiting > q.max_total:
        problems.append(f"{where}.max_waiting must not exceed max_total")
    if q.pilot.idle_timeout <= 0:
        problems.append(f"{where}.pilot.idle_timeout must be positive")
    if q.pilot.max_jobs < 0:
        problems.append(f"{where}.pilot.max_jobs must not be negative")
    if q.pilot.token_lifetime < 0:
        problems.append(f"{where}.pilot.token_lifetime must not be negative")


def _validate(cfg: DirectorConfig) -> None:
    problems: list[str] = []
    _validate_director(cfg.director, problems)
    names = [q.name for q in cfg.queues]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate queue name(s): {', '.join(dupes)}")
    for queue in cfg.queues:
        _validate_queue(queue, problems)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def config_from_dict(data: dict[str, Any]) -> DirectorConfig:
    cfg = convert_config(data, DirectorConfig)
    _validate(cfg)
    return cfg


def load_config(path: Path) -> DirectorConfig:
    return load_config_file(path, config_from_dict)
