"""gb2_ds_list and gb2_ds_get: look at a dataset and download it, gbasf2 style.

A dataset is named by its logical path name (LPN, starts with '/'); the gb2_ds_* commands also
take a bare project name, meaning the caller's `/belle/user/<user>/<project>`.

gb2_ds_get resumes: files already present and verified are skipped, temporaries an interrupted
run left are removed first, and copies that download but do not match the catalog are reported
to central as suspect (it checks them, and ranks them last meanwhile).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridpilot.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    UsageError,
    add_central_option,
    console,
    format_size,
    make_parser,
    one_line,
    run_command,
)
from gridpilot.cli.datasets import REPLICA_BATCH, get_replicas, list_dataset
from gridpilot.cli.ds_download import (
    DEFAULT_WORKERS,
    FileResult,
    FileToGet,
    Outcome,
    dataset_dir,
    get_all,
    local_path_for,
    remove_stale_partials,
)
from gridpilot.cli.gbasf2 import PROJECT_NAME_RE
from gridpilot.cli.tables import dataset_table, file_to_dict
from gridpilot.client import CentralClient
from gridpilot.client_errors import ClientError
from gridpilot.client_settings import ClientSettings
from gridpilot.v1 import data_pb2

# Users' own files live under USER_ROOT/<name>/ (gbasf2's layout; central enforces it).
USER_ROOT = "/belle/user"


def dataset_lpn(target: str, user: str) -> str:
    """An LPN as given, or a project name turned into the user's project directory."""
    target = target.strip()
    if target.startswith("/"):
        return target.rstrip("/") or "/"
    if not PROJECT_NAME_RE.match(target):
        raise UsageError(f"{target!r} is neither an LPN (starting with '/') nor a project name")
    return f"{USER_ROOT}/{user}/{target}"


def transfer_progress() -> Progress:
    """The progress bar of the gb2_ds_* transfers, on stderr (stdout stays the report)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=False,
    )


# ---- gb2_ds_list -------------------------------------------------------------------------------


def _ds_list(argv: list[str] | None) -> int:
    parser = make_parser("gb2_ds_list", "List the files of a dataset.")
    parser.add_argument("lpn", metavar="LPN|PROJECT", help="dataset LPN or your project name")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_central_option(parser)
    args = parser.parse_args(argv)
    settings = ClientSettings.resolve(args.central)
    lpn = dataset_lpn(args.lpn, settings.user)
    with CentralClient(settings) as client:
        files = list_dataset(client, lpn)
    if args.json:
        print(json.dumps([file_to_dict(f) for f in files], indent=2))
        return EXIT_OK
    out = console()
    out.print(dataset_table(files))
    total = sum(f.size for f in files)
    out.print(f"{len(files)} file(s), {format_size(total)} in {lpn}")
    return EXIT_OK


def ds_list_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_ds_list", lambda: _ds_list(argv))


# ---- gb2_ds_get --------------------------------------------------------------------------------


def _replicas(
    client: CentralClient, lfns: list[str], site: str
) -> dict[str, tuple[tuple[str, str], ...]]:
    return {
        f.lfn: tuple((r.se, r.url) for r in f.replicas) for f in get_replicas(client, lfns, site)
    }


def _plan(
    client: CentralClient, lpn: str, dest: Path, site: str
) -> tuple[list[FileToGet], dict[str, str]]:
    files = list_dataset(client, lpn)
    replicas = _replicas(client, [f.lfn for f in files], site)
    ses: data_pb2.ListStorageElementsResponse = client.call(
        client.data.ListStorageElements, data_pb2.ListStorageElementsRequest()
    )
    se_urls = {se.name: se.url for se in ses.storage_elements}
    items: list[FileToGet] = []
    for f in files:
        try:
            local = local_path_for(f.lfn, lpn, dest)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        items.append(FileToGet(f.lfn, f.size, f.adler32, replicas.get(f.lfn, ()), local))
    return items, se_urls


def _report_suspects(client: CentralClient, results: list[FileResult]) -> None:
    """Tell central about copies that did not match the catalog, so that jobs read them last
    and central checks them. Best effort: the download's outcome does not depend on it."""
    suspects = [
        data_pb2.SuspectReplica(lfn=r.lfn, se=bad.se, reason=bad.problem)
        for r in results
        for bad in r.bad_copies
    ]
    if not suspects:
        return
    try:
        for start in range(0, len(suspects), REPLICA_BATCH):
            client.call(
                client.data.ReportDataAccess,
                data_pb2.ReportDataAccessRequest(
                    job_id=0, suspects=suspects[start : start + REPLICA_BATCH]
                ),
            )
    except ClientError as exc:
        print(
            f"gb2_ds_get: warning: could not report {len(suspects)} bad copy(ies) to central: "
            f"{one_line(str(exc))}",
            file=sys.stderr,
        )
        return
    print(f"Reported {len(suspects)} bad copy(ies) to central as suspect (central checks them).")


def _report(results: list[FileResult]) -> int:
    counts = {outcome: 0 for outcome in Outcome}
    for result in results:
        counts[result.outcome] += 1
        if result.outcome is Outcome.FAILED:
            print(f"FAILED {result.lfn}: {'; '.join(result.errors) or 'unknown error'}")
    print(
        f"{counts[Outcome.DOWNLOADED]} downloaded, "
        f"{counts[Outcome.SKIPPED]} skipped (already present and verified), "
        f"{counts[Outcome.FAILED]} failed."
    )
    return EXIT_ERROR if counts[Outcome.FAILED] else EXIT_OK


def _ds_get(argv: list[str] | None) -> int:
    parser = make_parser("gb2_ds_get", "Download the files of a dataset, verifying each.")
    parser.add_argument("target", metavar="PROJECT|LPN", help="your project name or an LPN")
    parser.add_argument("-d", "--dir", type=Path, default=Path("."), help="download directory")
    parser.add_argument("--site", default="", help="prefer replicas near this site")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="parallel downloads (1-16)"
    )
    add_central_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 16:
        raise UsageError(f"--workers must be between 1 and 16, got {args.workers}")
    settings = ClientSettings.resolve(args.central)
    lpn = dataset_lpn(args.target, settings.user)
    target_dir = dataset_dir(lpn, args.dir)
    with CentralClient(settings) as client:
        items, se_urls = _plan(client, lpn, args.dir, args.site)
        print(f"{len(items)} file(s) in {lpn} -> {target_dir}")
        stale = remove_stale_partials(target_dir)
        if stale:
            print(f"Removed {len(stale)} partial download(s) left by an interrupted run.")
        progress = transfer_progress()
        with progress:
            task = progress.add_task("downloading", total=len(items))
            results = get_all(
                items, se_urls, args.workers, on_done=lambda _r: progress.advance(task)
            )
        _report_suspects(client, results)
    return _report(results)


def ds_get_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_ds_get", lambda: _ds_get(argv))
