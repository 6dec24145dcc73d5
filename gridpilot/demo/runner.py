"""`gridpilot demo`: the whole pilot loop on this machine, with no configuration.

Secure as in production: a CA and certificates made for the run, TLS on every connection, the
user logged in with gb2_proxy_init and a client certificate, tokens for directors, pilots and
jobs. Central, two sites each with a local site director and its own SE (a directory, or with
`--se xrootd` a real XRootD server), a failover SE at a third site, a generated dataset with
replicas at both sites, a 20-job project submitted with the gbasf2 CLI, an SE outage that
forces output failover, a job killed from the CLI, live progress, a summary, the output
dataset downloaded with gb2_ds_get and every checksum verified.
Exits 0 only when all of that happened as expected.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gridpilot.checksum import adler32_of_file
from gridpilot.demo.cluster import OUTAGE_SE, DemoCluster, DemoLayout
from gridpilot.demo.progress import follow_project
from gridpilot.demo.storage import KINDS
from gridpilot.enums import job_status_from_proto
from gridpilot.v1 import data_pb2, jobs_pb2

PROJECT = "demo01"
RELEASE = "release-08-00-00"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gridpilot demo", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs in the demo project")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--seconds-per-job", type=float, default=4.0, help="payload run time of each job"
    )
    parser.add_argument("--timeout", type=float, default=170.0, help="give up after this long")
    parser.add_argument(
        "--se",
        choices=KINDS,
        default="directories",
        help="storage elements: directories, or real XRootD servers (root, xrootd-server)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    console = Console(stderr=False)
    root = Path(tempfile.mkdtemp(prefix="gridpilot-demo-"))
    console.print(f"[bold]gridpilot demo[/] in {root}")
    started = time.monotonic()
    ok = False
    try:
        with DemoCluster(DemoLayout.create(root), console, args.se) as cluster:
            ok = _run(cluster, args, console, started)
    except RuntimeError as exc:
        console.print(f"[red]the demo cannot run:[/] {exc}")
    finally:
        if args.keep:
            console.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    verdict = "[green]demo succeeded[/]" if ok else "[red]demo FAILED[/]"
    console.print(f"{verdict} in {elapsed:.0f} s")
    return 0 if ok else 1


def _run(cluster: DemoCluster, args: argparse.Namespace, console: Console, started: float) -> bool:
    deadline = started + args.timeout
    cluster.start_central()
    cluster.log_in()
    dataset = cluster.register_dataset(args.jobs)
    cluster.start_site_directors()
    job_ids = cluster.submit_project(PROJECT, RELEASE, dataset, args.seconds_per_job)
    console.print(f"submitted {len(job_ids)} jobs (ids {job_ids[0]}..{job_ids[-1]}) with gbasf2")

    outcome = follow_project(
        cluster, PROJECT, job_ids=job_ids, outage_se=OUTAGE_SE, deadline=deadline, console=console
    )
    jobs = cluster.list_jobs(PROJECT)
    requests = cluster.failover_requests()
    _print_summary(console, jobs, requests)

    problems: list[str] = list(outcome.problems)
    statuses = Counter(job_status_from_proto(j.status).value for j in jobs)
    if outcome.killed_job is None or statuses.get("Killed", 0) != 1:
        problems.append("expected exactly one job killed from the CLI")
    if statuses.get("Done", 0) != len(job_ids) - 1:
        problems.append(f"expected {len(job_ids) - 1} jobs Done, got {dict(statuses)}")
    if not any(r.status == "Done" for r in requests):
        problems.append("expected at least one output to go through the failover SE")
    problems += _download_and_verify(cluster, console, deadline)
    cluster.stop_pilots_and_directors()
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}")
    return not problems


def _print_summary(
    console: Console, jobs: list[jobs_pb2.JobSummary], requests: list[data_pb2.FailoverRequest]
) -> None:
    by_status = Counter(job_status_from_proto(j.status).value for j in jobs)
    table = Table(title="Jobs by status")
    table.add_column("Status")
    table.add_column("Jobs", justify="right")
    for status, count in sorted(by_status.items()):
        table.add_row(status, str(count))
    console.print(table)

    by_site = Counter((j.site or "-", job_status_from_proto(j.status).value) for j in jobs)
    table = Table(title="Jobs by site")
    table.add_column("Site")
    table.add_column("Status")
    table.add_column("Jobs", justify="right")
    for (site, status), count in sorted(by_site.items()):
        table.add_row(site, status, str(count))
    console.print(table)

    table = Table(title="Output failovers")
    table.add_column("Job", justify="right")
    table.add_column("Output file")
    table.add_column("Failover SE → destination")
    table.add_column("Status")
    table.add_column("Attempts", justify="right")
    for r in sorted(requests, key=lambda r: r.job_id):
        route = f"{r.source_se} → {r.target_se}"
        table.add_row(str(r.job_id), Path(r.lfn).name, route, r.status, str(r.attempts))
    console.print(table)


def _download_and_verify(cluster: DemoCluster, console: Console, deadline: float) -> list[str]:
    target = cluster.layout.root / "download"
    console.print(f"downloading the output dataset with gb2_ds_get into {target}")
    code = cluster.run_cli("gb2_ds_get", [PROJECT, "-d", str(target), "--site", "LCG.KEK.jp"])
    problems = [] if code == 0 else [f"gb2_ds_get exited {code}"]
    files = cluster.list_dataset(f"/belle/user/{cluster.user}/{PROJECT}")
    verified = 0
    for f in files:
        local = next(target.rglob(Path(f.lfn).name), None)
        if local is None:
            problems.append(f"{f.lfn} was not downloaded")
        elif adler32_of_file(local) != f.adler32:
            problems.append(f"{f.lfn}: checksum mismatch after download")
        else:
            verified += 1
    console.print(f"verified adler32 of {verified}/{len(files)} output files")
    if not files:
        problems.append("the output dataset is empty")
    if time.monotonic() > deadline:
        problems.append("the demo ran past its time limit")
    return problems


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
