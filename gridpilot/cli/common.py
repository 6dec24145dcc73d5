"""What every user command shares: the error convention, confirmation, consoles, id parsing.

Convention (as gbasf2 users expect): a failure is ONE line on stderr and a non-zero exit code;
tracebacks are for bugs only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console

from gridpilot.cli.args import (
    EXIT_ABORTED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_central_option,
    make_parser,
)
from gridpilot.client_errors import CentralUnreachableError, ClientError

# Wide enough that a job table never wraps when piped to a file or `less`.
_PIPE_WIDTH = 200


class CliError(Exception):
    """A user-facing failure: printed as one line, exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


__all__ = [
    "EXIT_ABORTED",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "UsageError",
    "add_central_option",
    "confirm",
    "console",
    "format_id_ranges",
    "format_size",
    "format_time",
    "make_parser",
    "one_line",
    "parse_job_ids",
    "run_command",
    "split_names",
]


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class _WarningLine(logging.Handler):
    """Library warnings (e.g. a plaintext channel) as one `prog: warning: ...` line each."""

    def __init__(self, prog: str) -> None:
        super().__init__(logging.WARNING)
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, object] = getattr(record, "fields", {})
        text = fields.get("warning") or fields.get("error") or record.getMessage()
        # sys.stderr looked up now: it may have been replaced since the handler was added.
        print(f"{self.prog}: warning: {one_line(str(text))}", file=sys.stderr)


def _show_warnings(prog: str) -> None:
    # The marker gridpilot.logs.configure_logging puts on its handler.
    if any(getattr(h, "_gridpilot_handler", False) for h in logging.getLogger().handlers):
        return  # the process configured gridpilot's logging itself (a service)
    gridpilot_logger = logging.getLogger("gridpilot")
    for handler in gridpilot_logger.handlers:
        if isinstance(handler, _WarningLine):
            handler.prog = prog
            return
    gridpilot_logger.addHandler(_WarningLine(prog))


def run_command(prog: str, body: Callable[[], int], stderr: TextIO | None = None) -> int:
    """Run a command body, turning expected failures into one stderr line and an exit code."""
    err = stderr or sys.stderr
    _show_warnings(prog)
    try:
        return body()
    except SystemExit as exc:
        # argparse's --help and usage errors; callers of main() get a code, not an exception.
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except CliError as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=err)
        return exc.exit_code
    except CentralUnreachableError as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=err)
        return EXIT_UNREACHABLE
    except ClientError as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return 130


def confirm(question: str, force: bool, default_yes: bool = True) -> bool:
    """Ask on the terminal unless forced; EOF (no terminal, empty stdin) means no."""
    if force:
        return True
    suffix = "[Y/n]" if default_yes else "[y/N]"
    print(f"{question} {suffix} ", end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer:
        print()
        return False
    answer = answer.strip().lower()
    if not answer:
        return default_yes
    return answer in ("y", "yes")


def console(stderr: bool = False) -> Console:
    """A rich console that does not squeeze tables when output is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    con = Console(file=stream, highlight=False)
    if not con.is_terminal and "COLUMNS" not in os.environ:
        con = Console(file=stream, highlight=False, width=_PIPE_WIDTH)
    return con


def parse_job_ids(values: Sequence[str]) -> list[int]:
    """Job ids as users type them: "12", "12,13", "12-20", "12 15-17" (repeatable)."""
    ids: list[int] = []
    for value in values:
        for part in value.replace(",", " ").split():
            first, sep, last = part.partition("-")
            try:
                low = int(first)
                high = int(last) if sep else low
            except ValueError as exc:
                raise UsageError(f"bad job id {part!r} (expected N, N,M or N-M)") from exc
            if low <= 0 or high < low:
                raise UsageError(f"bad job id range {part!r}")
            if high - low > 1_000_000:
                raise UsageError(f"job id range {part!r} is too large")
            ids.extend(range(low, high + 1))
    return sorted(set(ids))


def format_time(epoch: float) -> str:
    """UTC, as gbasf2 prints LastUpdate; empty for an unset time."""
    if epoch <= 0:
        return ""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    value = float(size)
    units = ("kB", "MB", "GB", "TB")
    for unit in units[:-1]:
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} {units[-1]}"


def split_names(values: Sequence[str] | None) -> list[str]:
    """Site names from repeatable, comma-separated options, in order, without duplicates."""
    names: list[str] = []
    for value in values or ():
        for raw in value.split(","):
            name = raw.strip()
            if name and name not in names:
                names.append(name)
    return names


def format_id_ranges(ids: Sequence[int]) -> str:
    """Compact ids for humans: [1, 2, 3, 7] -> "1-3, 7"."""
    parts: list[str] = []
    ordered = sorted(set(ids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)
