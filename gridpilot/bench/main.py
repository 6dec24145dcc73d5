"""`gridpilot bench matcher [--quick] [--json] [--jobs N] ...`: see docs/benchmarks.md.

Exit code 0 when the run had no error and no job was lost or matched twice; 1 otherwise.
Speed never fails the command: targets are compared in docs/benchmarks.md, not here.
"""

from __future__ import annotations

import argparse
import json
import sys

import msgspec
from rich.console import Console
from rich.table import Table

from gridpilot.bench.matcher_bench import QUICK, Options, Result, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridpilot bench", description=__doc__)
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    matcher = benches.add_parser("matcher", help="durable matches/s of a real central")
    matcher.add_argument("--quick", action="store_true", help="small numbers, for CI (< 2 min)")
    matcher.add_argument("--json", action="store_true", help="machine-readable output")
    defaults = Options()
    for name, kind, help_text in (
        ("jobs", int, "waiting jobs before the run"),
        ("queues", int, "requirement shapes (task queues)"),
        ("sites", int, "sites"),
        ("groups", int, "user groups"),
        ("pilots", int, "pilots with an open session"),
        ("heartbeat-period", float, "seconds between a pilot's heartbeats"),
        ("concurrency", int, "concurrent match loops"),
        ("duration", float, "seconds of the match run"),
        ("echo-duration", float, "seconds of the echo baseline"),
        ("bulk-jobs", int, "jobs in the one timed SubmitJobs call"),
        ("workers", int, "load-generator processes"),
    ):
        attr = name.replace("-", "_")
        matcher.add_argument(
            f"--{name}",
            type=kind,
            default=None,
            help=f"{help_text} (default {getattr(defaults, attr)}; "
            f"--quick: {getattr(QUICK, attr)})",
        )
    matcher.add_argument("--work-dir", default="", help="keep central's data here")
    return parser


def options_from(args: argparse.Namespace) -> Options:
    base = QUICK if args.quick else Options()
    changes = {
        field: getattr(args, field)
        for field in Options.__struct_fields__
        if getattr(args, field, None) not in (None, "")
    }
    options = msgspec.structs.replace(base, **changes)
    if min(options.jobs, options.queues, options.sites, options.groups) < 0:
        raise ValueError("counts must not be negative")
    if min(options.queues, options.sites, options.groups, options.pilots, options.workers) < 1:
        raise ValueError("queues, sites, groups, pilots and workers must be at least 1")
    if options.concurrency < 1 or options.duration <= 0 or options.heartbeat_period <= 0:
        raise ValueError("concurrency, duration and heartbeat period must be positive")
    return options


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def print_table(result: Result) -> None:
    o = result.options
    table = Table(
        title=f"gridpilot bench matcher ({o.jobs:,} jobs, {o.queues} shapes, "
        f"{o.sites} sites, {o.groups} groups, {o.pilots:,} pilots, "
        f"concurrency {o.concurrency}, {o.duration:g} s)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("durable matches/s", _rate(result.matches_per_s)),
        ("matches (total)", f"{result.matches:,}"),
        ("match latency p50 / p99 (ms)", f"{result.p50_ms:.1f} / {result.p99_ms:.1f}"),
        ("echo RPC/s (same client, TLS)", _rate(result.echo_rpc_per_s)),
        ("ratio matches / echo", f"{result.ratio_to_echo:.2f}"),
        ("heartbeats/s handled", f"{result.heartbeats_per_s:,.1f}"),
        (
            "pilot sessions open (reopened)",
            f"{result.sessions_opened:,} ({result.session_retries:,})",
        ),
        ("central RSS (MB)", f"{result.central_rss_bytes / 2**20:,.0f}"),
        ("RSS growth per waiting job (bytes)", f"{result.bytes_per_waiting_job:,.0f}"),
        ("restart with the jobs (s)", f"{result.restart_s:.2f}"),
        (f"bulk submit of {result.bulk_submit_jobs:,} jobs (s)", f"{result.bulk_submit_s:.2f}"),
        ("prefill (jobs/s, batches of 10,000)", _rate(result.prefill_jobs_per_s)),
        ("no-match replies", f"{result.no_match_replies:,}"),
        ("duplicated matches / lost jobs", f"{result.duplicated_matches} / {result.lost_jobs}"),
        ("RPC errors", f"{result.errors:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    for problem in result.problems:
        console.print(f"[red]problem:[/red] {problem}")


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    result = run(options)
    if args.json:
        print(json.dumps(msgspec.to_builtins(result), indent=2))
    else:
        print_table(result)
    if not result.ok:
        print("gridpilot bench: FAILED: " + "; ".join(result.problems), file=sys.stderr)
        return 1
    return 0
