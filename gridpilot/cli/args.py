"""Argument parsing pieces with no heavy imports (the umbrella's --help must stay fast)."""

from __future__ import annotations

import argparse

EXIT_OK = 0
EXIT_ERROR = 1
# argparse exits with 2 on usage errors; keep that meaning for our own argument checks.
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_ABORTED = 4


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (no usage block) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description)


def add_central_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--central",
        metavar="HOST:PORT",
        help="central service address (default: $GRIDPILOT_CENTRAL, then "
        "~/.config/gridpilot/client.toml)",
    )
