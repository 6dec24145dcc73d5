"""`python -m pilot`: check the node, register with central, run jobs until told to stop.

Signals: SIGTERM/SIGINT terminate (running payloads are killed and reported, exit
TERMINATED); SIGUSR1 drains (no new jobs, exit when the running ones end).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from gridpilot.channel import TokenFileError, consume_token_file
from gridpilot.logs import configure_logging, get_logger
from pilot.exit_codes import PilotExitCode
from pilot.node import NodeLimits
from pilot.pilot import Pilot
from pilot.settings import PilotSettings

log = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pilot",
        description="gridpilot pilot: pulls jobs from central and runs them on this node.",
        epilog="Exit codes: " + ", ".join(f"{c.value} {c.name}" for c in PilotExitCode),
    )
    add = parser.add_argument
    add("--central", required=True, metavar="HOST:PORT", help="central service address")
    add("--pilot-id", default="", help="id given by the site director (empty: central assigns)")
    add("--site", required=True, help="site name, e.g. LCG.KEK.jp")
    add("--ce", default="", help="computing element the pilot came through")
    add("--queue", default="", help="batch queue the pilot came through")
    add("--slots", type=int, default=None, help="job slots (default: cores of the node)")
    add("--memory-mb", type=int, default=None, help="memory for jobs (default: the node's)")
    add("--cpu-time", type=int, default=86400, help="seconds the batch slot offers")
    add("--platform", default=None, help="platform name (default: detected)")
    add(
        "--tags",
        default=[],
        action="append",
        help="resource tags, comma separated; may be repeated",
    )
    add("--work-dir", type=Path, default=Path.cwd(), help="where job directories go")
    add("--idle-timeout", type=float, default=600.0, help="stop after N s with no match")
    add("--max-jobs", type=int, default=0, help="stop after N jobs (0: unlimited)")
    add("--software-setup", default=None, metavar="TEMPLATE", help="passed to wrappers")
    add("--heartbeat-period", type=float, default=None, help="override central's period")
    add("--kill-grace", type=float, default=10.0, help="SIGTERM→SIGKILL delay for jobs")
    add(
        "--unreachable-timeout",
        type=float,
        default=600.0,
        help="give up after central is unreachable this long with no job running",
    )
    add("--min-disk-mb", type=int, default=1024, help="free disk needed in the work dir")
    add("--ca", type=Path, default=None, help="CA certificate that signed central's certificate")
    add(
        "--token-file",
        type=Path,
        default=None,
        help="the single-use registration token from the site director (removed once read)",
    )
    add("--insecure", action="store_true", help="plaintext to central (tests only; warns)")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def read_registration_token(path: Path | None) -> str:
    """The registration token, read once: the file is removed so it cannot be used again."""
    if path is None:
        raise ValueError("no registration token: --token-file FILE (the site director gives one)")
    try:
        return consume_token_file(path)
    except TokenFileError as exc:
        raise ValueError(str(exc)) from exc


def settings_from_args(args: argparse.Namespace) -> PilotSettings:
    # Checked before the single-use token is read (and removed) on a command line that fails.
    if args.ca is None and not args.insecure:
        raise ValueError("a CA certificate (--ca) is needed to verify central, or --insecure")
    if args.ca is not None and not args.ca.is_file():
        raise ValueError(f"CA certificate {args.ca} does not exist")
    tags = tuple(t.strip() for group in args.tags for t in group.split(",") if t.strip())
    return PilotSettings(
        central=args.central,
        site=args.site,
        work_dir=args.work_dir.resolve(),
        pilot_id=args.pilot_id,
        ce=args.ce,
        queue=args.queue,
        slots=args.slots,
        memory_mb=args.memory_mb,
        cpu_time=args.cpu_time,
        platform=args.platform,
        tags=tags,
        idle_timeout=args.idle_timeout,
        max_jobs=args.max_jobs,
        software_setup=args.software_setup,
        heartbeat_period=args.heartbeat_period,
        kill_grace=args.kill_grace,
        unreachable_timeout=args.unreachable_timeout,
        node_limits=NodeLimits(min_disk_free_mb=args.min_disk_mb),
        ca=args.ca.resolve() if args.ca is not None else None,
        insecure=args.insecure,
        registration_token=read_registration_token(args.token_file),
    )


async def _serve(settings: PilotSettings) -> PilotExitCode:
    loop = asyncio.get_running_loop()
    async with Pilot(settings) as pilot:
        loop.add_signal_handler(signal.SIGTERM, pilot.shutdown, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, pilot.shutdown, "SIGINT")
        loop.add_signal_handler(signal.SIGUSR1, pilot.drain, "SIGUSR1")
        try:
            code = await pilot.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
        log.info("pilot.exit", pilot_id=pilot.pilot_id, code=int(code), meaning=code.message)
        return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return int(asyncio.run(_serve(settings)))
    except Exception as exc:
        # Last resort: the batch system only sees the exit code, so make it say "crashed".
        log.exception("pilot.crashed", pilot_id=settings.pilot_id, error=repr(exc))
        return int(PilotExitCode.INTERNAL_ERROR)


if __name__ == "__main__":
    sys.exit(main())
