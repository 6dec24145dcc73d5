"""gb2_ds_put, gb2_ds_rm and gb2_replica_list: a user's own dataset management, gbasf2 style.

    gb2_ds_put LOCAL_FILE_OR_DIR... -d LPN|PROJECT --se SE   upload, verify, then register
    gb2_ds_rm LPN|PROJECT | --lfn LFN... [-y] [--no-wait]    remove every copy and the entries
    gb2_replica_list LFN... [--site S]                       where the copies are, in read order

Users write only under /belle/user/<their name>/; central enforces it, these commands only
refuse early what it would refuse anyway, before anything is transferred.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gridpilot.cli.common import (
    EXIT_ABORTED,
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    UsageError,
    add_central_option,
    confirm,
    console,
    format_size,
    make_parser,
    run_command,
)
from gridpilot.cli.datasets import get_replicas, list_dataset
from gridpilot.cli.ds_remove import DONE, FAILED, REFUSED, Removal, follow_removals, queue_removals
from gridpilot.cli.ds_upload import (
    DEFAULT_WORKERS,
    CatalogEntry,
    PutOutcome,
    PutResult,
    Register,
    RegistrationError,
    plan_files,
    put_all,
)
from gridpilot.cli.gb2_ds import USER_ROOT, dataset_lpn, transfer_progress
from gridpilot.cli.tables import file_to_dict, replicas_heading, replicas_table
from gridpilot.client import CentralClient
from gridpilot.client_errors import ClientError
from gridpilot.client_settings import ClientSettings, decode_token
from gridpilot.security.claims import Role
from gridpilot.v1 import data_pb2

DEFAULT_RM_TIMEOUT = 600.0


def _check_home(settings: ClientSettings, lpn: str) -> None:
    """Refuse before any transfer what central would refuse at registration or removal."""
    home = f"{USER_ROOT}/{settings.user}/"
    if decode_token(settings.token).role == Role.USER.value and not (lpn + "/").startswith(home):
        raise CliError(f"you may write only under {home}, not {lpn}")


# ---- gb2_ds_put --------------------------------------------------------------------------------


def _writable_se(client: CentralClient, name: str) -> data_pb2.StorageElement:
    response: data_pb2.ListStorageElementsResponse = client.call(
        client.data.ListStorageElements, data_pb2.ListStorageElementsRequest()
    )
    ses = {se.name: se for se in response.storage_elements}
    se = ses.get(name)
    if se is None:
        raise CliError(f"unknown storage element {name!r} (known: {', '.join(sorted(ses))})")
    if not se.writable:
        raise CliError(f"storage element {name} takes no writes now: {se.write_refusal}")
    return se


def _catalog(client: CentralClient, lfns: list[str]) -> dict[str, CatalogEntry]:
    return {
        f.lfn: CatalogEntry(f.size, f.adler32, frozenset(r.se for r in [*f.replicas, *f.skipped]))
        for f in get_replicas(client, lfns)
    }


def _registrar(client: CentralClient, se: str) -> Register:
    def register(lfn: str, size: int, adler32: str) -> None:
        replica = data_pb2.ReplicaRegistration(lfn=lfn, se=se, size=size, adler32=adler32)
        try:
            client.call(
                client.data.RegisterReplicas, data_pb2.RegisterReplicasRequest(replicas=[replica])
            )
        except ClientError as exc:
            raise RegistrationError(str(exc)) from exc

    return register


def _put_to_dict(r: PutResult) -> dict[str, Any]:
    return {
        "lfn": r.lfn,
        "local": str(r.local),
        "outcome": r.outcome.value,
        "size": r.size,
        "adler32": r.adler32,
        "errors": r.errors,
    }


def _put_report(results: list[PutResult], lpn: str, se: str, as_json: bool) -> int:
    counts = {outcome: 0 for outcome in PutOutcome}
    for r in results:
        counts[r.outcome] += 1
    if as_json:
        summary = {outcome.value: counts[outcome] for outcome in PutOutcome}
        files = [_put_to_dict(r) for r in results]
        print(json.dumps({"lpn": lpn, "se": se, **summary, "files": files}, indent=2))
    else:
        for r in results:
            if r.outcome is PutOutcome.FAILED:
                print(f"FAILED {r.lfn} ({r.local}): {'; '.join(r.errors) or 'unknown error'}")
        print(
            f"{counts[PutOutcome.UPLOADED]} uploaded, "
            f"{counts[PutOutcome.SKIPPED]} skipped (already registered with the same checksum), "
            f"{counts[PutOutcome.FAILED]} failed."
        )
    return EXIT_ERROR if counts[PutOutcome.FAILED] else EXIT_OK


def _ds_put(argv: list[str] | None) -> int:
    parser = make_parser(
        "gb2_ds_put",
        "Upload local files as a dataset to one SE: each copy is verified (size, adler32) "
        "before it is registered.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="LOCAL_FILE_OR_DIR")
    parser.add_argument(
        "-d", "--dataset", required=True, metavar="LPN|PROJECT", help="dataset LPN or project"
    )
    parser.add_argument("--se", required=True, help="storage element to write to")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, metavar="N", help="parallel uploads (1-16)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    add_central_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 16:
        raise UsageError(f"--workers must be between 1 and 16, got {args.workers}")
    settings = ClientSettings.resolve(args.central)
    lpn = dataset_lpn(args.dataset, settings.user)
    _check_home(settings, lpn)
    try:
        items = plan_files(args.paths, lpn)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    with CentralClient(settings) as client:
        se = _writable_se(client, args.se)
        catalog = _catalog(client, [item.lfn for item in items])
        if not args.json:
            print(f"{len(items)} file(s) -> {lpn} on {se.name}")
        progress = transfer_progress()
        with progress:
            task = progress.add_task("uploading", total=len(items))
            results = put_all(
                items,
                se.name,
                se.url,
                catalog,
                _registrar(client, se.name),
                workers=args.workers,
                on_done=lambda _r: progress.advance(task),
            )
    return _put_report(results, lpn, se.name, args.json)


def ds_put_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_ds_put", lambda: _ds_put(argv))


# ---- gb2_ds_rm ---------------------------------------------------------------------------------


def _rm_selection(
    args: argparse.Namespace, settings: ClientSettings, client: CentralClient
) -> list[str]:
    if bool(args.target) == bool(args.lfn):
        raise UsageError("name a dataset (LPN or project) or files with --lfn, not both")
    if args.lfn:
        for lfn in args.lfn:
            if not lfn.startswith("/"):
                raise UsageError(f"--lfn {lfn!r} is not an LFN (it must start with '/')")
        return list(dict.fromkeys(args.lfn))
    lpn = dataset_lpn(args.target, settings.user)
    files = list_dataset(client, lpn)
    # Before the question; on stderr with --json, where stdout is the report only.
    print(
        f"{len(files)} file(s), {format_size(sum(f.size for f in files))} in {lpn}",
        file=sys.stderr if args.json else sys.stdout,
    )
    return [f.lfn for f in files]


def _ask(count: int, yes: bool) -> bool:
    if yes:
        return True
    # A script must say -y: a prompt nobody answers would hang or read garbage.
    if not sys.stdin.isatty():
        raise CliError(
            f"not removing {count} file(s) without confirmation: stdin is not a terminal "
            "(use -y to remove without asking)",
            EXIT_ABORTED,
        )
    return confirm(
        f"Remove {count} file(s) from every SE and the catalog?", False, default_yes=False
    )


def _rm_report(removals: list[Removal], waited: bool, timeout: float, as_json: bool) -> int:
    by_status = {s: [r for r in removals if r.status == s] for s in (DONE, FAILED, REFUSED)}
    pending = [r for r in removals if not r.final]
    if as_json:
        files = [
            {"lfn": r.lfn, "request_id": r.request_id, "status": r.status, "error": r.error}
            for r in removals
        ]
        counts = {s.lower(): len(rs) for s, rs in by_status.items()}
        print(json.dumps({**counts, "waiting": len(pending), "files": files}, indent=2))
    else:
        for r in by_status[REFUSED]:
            print(f"REFUSED {r.lfn}: {r.error}")
        for r in by_status[FAILED]:
            print(f"FAILED {r.lfn}: {r.error or 'unknown error'} (request {r.request_id})")
        if not waited:
            print(
                f"{len(pending)} removal(s) queued, {len(by_status[REFUSED])} refused; "
                "central removes the files shortly."
            )
        else:
            for r in pending:
                last = f" (attempt {r.attempts} failed: {r.error})" if r.error else ""
                print(f"WAITING {r.lfn}: request {r.request_id} not done after {timeout:g} s{last}")
            print(
                f"{len(by_status[DONE])} removed, {len(by_status[FAILED])} failed, "
                f"{len(by_status[REFUSED])} refused, {len(pending)} still waiting."
            )
    bad = by_status[REFUSED] or by_status[FAILED] or (waited and pending)
    return EXIT_ERROR if bad else EXIT_OK


def _ds_rm(argv: list[str] | None) -> int:
    parser = make_parser(
        "gb2_ds_rm",
        "Remove the files of a dataset (or single files) from every SE and the catalog.",
    )
    parser.add_argument("target", nargs="?", metavar="LPN|PROJECT", help="dataset to remove")
    parser.add_argument(
        "--lfn", action="append", default=[], help="remove this file instead (repeatable)"
    )
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--no-wait", action="store_true", help="return once central has queued the removals"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_RM_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds to wait for the removals (default {DEFAULT_RM_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    add_central_option(parser)
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout:g}")
    settings = ClientSettings.resolve(args.central)
    with CentralClient(settings) as client:
        lfns = _rm_selection(args, settings, client)
        if not _ask(len(lfns), args.yes):
            print("Nothing was removed.")
            return EXIT_ABORTED
        removals = queue_removals(client, lfns)
        queued = sum(not r.final for r in removals)
        if queued and not args.no_wait:
            progress = transfer_progress()
            with progress:
                task = progress.add_task("removing", total=queued)
                follow_removals(
                    client,
                    removals,
                    args.timeout,
                    on_progress=lambda ended: progress.update(task, completed=ended),
                )
    return _rm_report(removals, not args.no_wait, args.timeout, args.json)


def ds_rm_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_ds_rm", lambda: _ds_rm(argv))


# ---- gb2_replica_list --------------------------------------------------------------------------


def _replica_list(argv: list[str] | None) -> int:
    parser = make_parser(
        "gb2_replica_list",
        "Show each file's replicas in the order a job at a site would read them, and why; "
        "then the copies that may not be read now.",
    )
    parser.add_argument("lfns", nargs="+", metavar="LFN")
    parser.add_argument("--site", default="", help="rank for a job at this site")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_central_option(parser)
    args = parser.parse_args(argv)
    for lfn in args.lfns:
        if not lfn.startswith("/"):
            raise UsageError(f"{lfn!r} is not an LFN (it must start with '/')")
    lfns = list(dict.fromkeys(args.lfns))
    settings = ClientSettings.resolve(args.central)
    with CentralClient(settings) as client:
        files = get_replicas(client, lfns, args.site)
    found = {f.lfn for f in files}
    missing = [lfn for lfn in lfns if lfn not in found]
    if args.json:
        print(json.dumps([file_to_dict(f) for f in files], indent=2))
    else:
        out = console()
        if args.site:
            out.print(f"Replicas in the order a job at {args.site} reads them:")
        else:
            out.print("Replicas in catalog order (--site SITE ranks them for a site):")
        for f in files:
            out.print(replicas_heading(f), markup=False)
            out.print(replicas_table(f))
    if missing:
        raise CliError(f"not in the catalog: {', '.join(missing)}")
    return EXIT_OK


def replica_list_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_replica_list", lambda: _replica_list(argv))
