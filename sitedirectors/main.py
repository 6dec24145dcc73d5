"""`gridpilot sitedirector --config FILE [--once]` (also `python -m sitedirectors`): run a site
director.

Exit codes: 0 normal end (SIGTERM/SIGINT, or a successful --once cycle), 1 a --once cycle that
could not reach central or had a failing queue, 2 a configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from gridpilot.config_files import ConfigError
from gridpilot.logs import configure_logging, get_logger
from sitedirectors.config import load_config
from sitedirectors.director import Director
from sitedirectors.journal import JournalError

log = get_logger(__name__)

EXIT_OK = 0
EXIT_CYCLE_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridpilot sitedirector",
        description="Submit pilots to computing elements according to central's demand.",
    )
    parser.add_argument("--config", required=True, type=Path, help="director TOML file")
    parser.add_argument("--once", action="store_true", help="run one cycle and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"sitedirectors: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.director.log_level)
    try:
        director = Director(config)
    except ConfigError as exc:
        print(f"sitedirectors: {args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:
        print(f"sitedirectors: {exc}", file=sys.stderr)
        return EXIT_CYCLE_FAILED
    try:
        if args.once:
            return EXIT_OK if director.run_cycle().ok else EXIT_CYCLE_FAILED

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("director.stopping", signal=signal.Signals(signum).name)
            director.stop()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        director.run()
        return EXIT_OK
    finally:
        director.close()
