"""`gridpilot admin bundle build|verify`: make and check the pilot bundle that site
directors ship to worker nodes (docs/pilot-bundle.md).

    gridpilot admin bundle build [--out DIR] [--python 3.11 --python 3.12 ...]
                                 [--find-links DIR] [--pip-option=OPT ...] [--json]
    gridpilot admin bundle verify FILE [--sha256 HEX] [--json]

Local files only: no central, no grpc. SOURCE_DATE_EPOCH, when set, is the build time,
which makes a rebuild from the same sources and wheels byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridpilot.bundle import (
    DEFAULT_PYTHONS,
    SUPPORTED_PYTHONS,
    BuildOptions,
    BuiltBundle,
    BundleError,
    BundleInfo,
    build_bundle,
    build_time_from_env,
    verify_bundle,
)
from gridpilot.bundle.build import StepCallback
from gridpilot.cli.args import EXIT_ERROR, EXIT_OK, EXIT_USAGE, make_parser

PROG = "gridpilot admin bundle"
# As gridpilot.cli.common.console, which is not imported: it pulls in grpc.
_PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    con = Console(file=stream, highlight=False)
    if not con.is_terminal and "COLUMNS" not in os.environ:
        con = Console(file=stream, highlight=False, width=_PIPE_WIDTH)
    return con


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@contextmanager
def _progress(enabled: bool) -> Iterator[StepCallback | None]:
    """Step-by-step progress on stderr (stdout stays clean for --json)."""
    if not enabled:
        yield None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=False,
    )
    task = progress.add_task("starting", total=None)

    def on_step(description: str, done: int, total: int) -> None:
        progress.update(task, description=description, completed=done, total=total)

    with progress:
        yield on_step


def _built_table(built: BuiltBundle) -> Table:
    table = Table(title="pilot bundle", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("file", str(built.path))
    table.add_row("sha256", built.sha256)
    table.add_row("size", _size(built.size))
    table.add_row("gridpilot", built.gridpilot_version)
    table.add_row("pythons", ", ".join(built.python_tags))
    table.add_row("checksum file", str(built.checksum_file))
    return table


def _build(args: argparse.Namespace) -> int:
    pythons = tuple(dict.fromkeys(args.python or DEFAULT_PYTHONS))
    options = BuildOptions(
        out_dir=args.out,
        pythons=pythons,
        find_links=tuple(args.find_links or ()),
        pip_options=tuple(args.pip_option or ()),
        build_time=build_time_from_env(),
    )
    with _progress(not args.json and not args.quiet) as on_step:
        built = build_bundle(options, on_step=on_step)
    if args.json:
        row = {
            "path": str(built.path),
            "sha256": built.sha256,
            "size": built.size,
            "checksum_file": str(built.checksum_file),
            "gridpilot_version": built.gridpilot_version,
            "python_tags": list(built.python_tags),
        }
        print(json.dumps(row, indent=2))
        return EXIT_OK
    console().print(_built_table(built))
    return EXIT_OK


def _verify_table(info: BundleInfo) -> Table:
    table = Table(title=f"{info.path.name}: OK", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("file", str(info.path))
    table.add_row("sha256", info.sha256)
    table.add_row("size", _size(info.size))
    table.add_row("gridpilot", info.gridpilot_version)
    table.add_row("built", info.built)
    table.add_row("files", f"{info.files} (each matches MANIFEST.sha256)")
    for tag, versions in info.requirements.items():
        table.add_row(tag, ", ".join(f"{name} {v}" for name, v in versions.items()))
    return table


def _verify(args: argparse.Namespace) -> int:
    info = verify_bundle(args.file, expected_sha256=args.sha256)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        console().print(_verify_table(info))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "Build and check the pilot bundle for worker nodes.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build gridpilot-pilot-<version>.tar.gz")
    build.add_argument("--out", type=Path, default=Path(), help="output directory (default: .)")
    build.add_argument(
        "--python",
        action="append",
        choices=SUPPORTED_PYTHONS,
        help=f"a CPython to support, repeatable (default: {' '.join(DEFAULT_PYTHONS)})",
    )
    build.add_argument(
        "--find-links",
        action="append",
        type=Path,
        metavar="DIR",
        help="also look for wheels here (offline builds), repeatable",
    )
    build.add_argument(
        "--pip-option",
        action="append",
        metavar="OPT",
        help="passed to pip install, repeatable; write --pip-option=--no-index",
    )
    build.add_argument("--json", action="store_true", help="machine-readable output")
    build.add_argument("--quiet", action="store_true", help="no progress display")
    build.set_defaults(run=_build)
    verify = actions.add_parser("verify", help="check a bundle's layout and every checksum")
    verify.add_argument("file", type=Path, help="the bundle (.tar.gz)")
    verify.add_argument(
        "--sha256",
        metavar="HEX",
        help="the checksum the file must have (default: its .sha256 file, if there is one)",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(run=_verify)
    return parser


def main(argv: list[str]) -> int:
    """Run `gridpilot admin bundle ACTION ...` (argv starts at ACTION)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (BundleError, OSError) as exc:
        # pip's last lines follow the first line of a build error: keep them readable.
        print(f"{PROG} {args.action}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG} {args.action}: interrupted", file=sys.stderr)
        return 130
