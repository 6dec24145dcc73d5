"""Command line of `python -m wrapper` (the pilot builds it; see docs/architecture.md)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

# DIRAC/Pilot3 declare a payload stalled when it used < 5% CPU over its wall time after 30 min.
DEFAULT_STALLED_GRACE = 1800.0
DEFAULT_WATCHDOG_PERIOD = 10.0
# Pilot3's looping-job limit: a payload that writes no file for 2 h is stuck.
DEFAULT_LOOPING_LIMIT = 7200.0
DEFAULT_MIN_DISK_FREE_MB = 100
# Long enough to ride out a central restart; the pilot's own job slot is the real bound.
DEFAULT_CENTRAL_RETRY_SECONDS = 900.0


@dataclass(frozen=True)
class WrapperOptions:
    central: str
    job_dir: Path
    site: str
    software_setup: str | None = None
    wall_limit: float | None = None
    watchdog_period: float = DEFAULT_WATCHDOG_PERIOD
    stalled_grace: float = DEFAULT_STALLED_GRACE
    looping_limit: float = DEFAULT_LOOPING_LIMIT
    min_disk_free_mb: int = DEFAULT_MIN_DISK_FREE_MB
    central_retry_seconds: float = DEFAULT_CENTRAL_RETRY_SECONDS
    heartbeat_file: Path | None = None
    log_level: str = "INFO"
    # TLS towards central: the CA that signed its certificate (None only with insecure).
    ca: Path | None = None
    insecure: bool = False
    # The job token (bound to this job and attempt); None: <job dir>/job.token.
    token_file: Path | None = None

    @property
    def job_token_file(self) -> Path:
        return self.token_file if self.token_file is not None else self.job_dir / "job.token"


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wrapper",
        description="Run one matched job attempt: sandbox, input data, payload, outputs, report.",
    )
    parser.add_argument("--central", required=True, help="central's HOST:PORT")
    parser.add_argument(
        "--job-dir", required=True, type=Path, help="directory holding job.pb (the MatchedJob)"
    )
    parser.add_argument("--site", required=True, help="site the job runs at (orders replicas)")
    parser.add_argument(
        "--software-setup",
        default=None,
        help="shell snippet preparing a release, with {release}, e.g. "
        '"source /sw/{release}/setup.sh" (default: basf2 is already on PATH)',
    )
    parser.add_argument(
        "--wall-limit", type=_positive, default=None, help="wall-clock seconds the payload may run"
    )
    parser.add_argument(
        "--watchdog-period",
        type=_positive,
        default=DEFAULT_WATCHDOG_PERIOD,
        help="seconds between watchdog checks",
    )
    parser.add_argument(
        "--stalled-grace",
        type=_positive,
        default=DEFAULT_STALLED_GRACE,
        help="payload seconds before the CPU/wall < 5%% stall check applies",
    )
    parser.add_argument(
        "--looping-limit",
        type=_non_negative,
        default=DEFAULT_LOOPING_LIMIT,
        help="kill a payload that has written no file (work directory, payload log) for this "
        "many seconds; 0: never",
    )
    parser.add_argument(
        "--min-disk-free-mb",
        type=_non_negative_int,
        default=DEFAULT_MIN_DISK_FREE_MB,
        help="kill the payload when the work directory's file system has less free space",
    )
    parser.add_argument(
        "--central-retry-seconds",
        type=_positive,
        default=DEFAULT_CENTRAL_RETRY_SECONDS,
        help="how long to keep retrying central while it is unreachable",
    )
    parser.add_argument(
        "--heartbeat-file",
        type=Path,
        default=None,
        help="write the payload's latest resource usage (JSON) here every watchdog period",
    )
    parser.add_argument("--ca", type=Path, default=None, help="CA certificate of central")
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="the job token (default: JOB_DIR/job.token); removed once read, so the payload "
        "cannot pick it up",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext to central (tests only; warns)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser


def parse_options(argv: list[str] | None) -> WrapperOptions:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.ca is None and not ns.insecure:
        parser.error("--ca FILE is needed to verify central (or --insecure for plaintext)")
    return WrapperOptions(
        central=ns.central,
        job_dir=ns.job_dir,
        site=ns.site,
        software_setup=ns.software_setup,
        wall_limit=ns.wall_limit,
        watchdog_period=ns.watchdog_period,
        stalled_grace=ns.stalled_grace,
        looping_limit=ns.looping_limit,
        min_disk_free_mb=ns.min_disk_free_mb,
        central_retry_seconds=ns.central_retry_seconds,
        heartbeat_file=ns.heartbeat_file,
        log_level=ns.log_level,
        ca=ns.ca,
        insecure=ns.insecure,
        token_file=ns.token_file,
    )
