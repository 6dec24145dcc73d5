"""gb2_job_status, gb2_job_kill, gb2_job_delete, gb2_job_reschedule, gb2_job_output and
gb2_project_summary: the gbasf2 commands that look at and act on submitted jobs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from gridpilot.cli.common import (
    EXIT_ABORTED,
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    UsageError,
    add_central_option,
    confirm,
    console,
    format_id_ranges,
    make_parser,
    parse_job_ids,
    run_command,
    split_names,
)
from gridpilot.cli.sandbox import download_sandbox, extract_safely
from gridpilot.cli.tables import (
    job_to_dict,
    jobs_table,
    project_to_dict,
    projects_table,
    status_name,
    summary_lines,
)
from gridpilot.client import CentralClient
from gridpilot.client_errors import ClientError
from gridpilot.client_settings import ClientSettings
from gridpilot.enums import job_status_to_proto, parse_job_status
from gridpilot.v1 import jobs_pb2

ALL_USERS = "all"


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--project", help="project name")
    parser.add_argument(
        "-j", "--jobid", nargs="+", default=[], metavar="IDS", help="job ids: 12 13,14 20-30"
    )
    parser.add_argument(
        "--status", action="append", metavar="STATUS", help="only jobs in these statuses"
    )
    parser.add_argument("--site", help="only jobs at this site")
    parser.add_argument(
        "-u", "--user", help=f"owner of the jobs (default: you; '{ALL_USERS}' for everyone)"
    )
    add_central_option(parser)


def _selection(args: argparse.Namespace, settings: ClientSettings) -> jobs_pb2.JobSelection:
    try:
        statuses = [parse_job_status(s) for s in split_names(args.status)]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    owner = args.user or settings.user
    return jobs_pb2.JobSelection(
        project=args.project or "",
        job_ids=parse_job_ids(args.jobid),
        statuses=[job_status_to_proto(s) for s in statuses],
        site=args.site or "",
        owner="" if owner == ALL_USERS else owner,
    )


def _list_jobs(
    client: CentralClient, selection: jobs_pb2.JobSelection
) -> list[jobs_pb2.JobSummary]:
    response: jobs_pb2.ListJobsResponse = client.call(
        client.jobs.ListJobs, jobs_pb2.ListJobsRequest(selection=selection)
    )
    return list(response.jobs)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


# ---- gb2_job_status ----------------------------------------------------------------------------


def _job_status(argv: list[str] | None) -> int:
    parser = make_parser("gb2_job_status", "Show the status of your jobs.")
    _add_selection_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    settings = ClientSettings.resolve(args.central)
    selection = _selection(args, settings)
    with CentralClient(settings) as client:
        jobs = _list_jobs(client, selection)
    if args.json:
        _print_json([job_to_dict(job) for job in jobs])
        return EXIT_OK
    out = console()
    if jobs:
        out.print(jobs_table(jobs))
    for line in summary_lines(jobs):
        out.print(line)
    return EXIT_OK


def job_status_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_job_status", lambda: _job_status(argv))


# ---- kill / delete / reschedule ----------------------------------------------------------------


def _kill(client: CentralClient, ids: list[int]) -> list[jobs_pb2.JobActionResult]:
    selection = jobs_pb2.JobSelection(job_ids=ids)
    response: jobs_pb2.KillJobsResponse = client.call(
        client.jobs.KillJobs, jobs_pb2.KillJobsRequest(selection=selection)
    )
    return list(response.results)


def _delete(client: CentralClient, ids: list[int]) -> list[jobs_pb2.JobActionResult]:
    selection = jobs_pb2.JobSelection(job_ids=ids)
    response: jobs_pb2.DeleteJobsResponse = client.call(
        client.jobs.DeleteJobs, jobs_pb2.DeleteJobsRequest(selection=selection)
    )
    return list(response.results)


def _reschedule(client: CentralClient, ids: list[int]) -> list[jobs_pb2.JobActionResult]:
    selection = jobs_pb2.JobSelection(job_ids=ids)
    response: jobs_pb2.RescheduleJobsResponse = client.call(
        client.jobs.RescheduleJobs, jobs_pb2.RescheduleJobsRequest(selection=selection)
    )
    return list(response.results)


_Action = Callable[[CentralClient, list[int]], list[jobs_pb2.JobActionResult]]
# verb -> (past tense, the call)
_ACTIONS: dict[str, tuple[str, _Action]] = {
    "kill": ("killed", _kill),
    "delete": ("deleted", _delete),
    "reschedule": ("rescheduled", _reschedule),
}


def _job_action(verb: str, argv: list[str] | None) -> int:
    prog = f"gb2_job_{verb}"
    past, action = _ACTIONS[verb]
    parser = make_parser(prog, f"{verb.capitalize()} jobs selected by project, id or status.")
    _add_selection_options(parser)
    parser.add_argument("--force", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)
    if not (args.project or args.jobid or args.status):
        raise UsageError("select jobs with -p PROJECT, -j IDS and/or --status")
    settings = ClientSettings.resolve(args.central)
    selection = _selection(args, settings)
    with CentralClient(settings) as client:
        jobs = _list_jobs(client, selection)
        if not jobs:
            print("0 jobs are selected.")
            return EXIT_OK
        # Act on exactly the jobs the user confirmed, not on a selection re-evaluated later.
        where = f" in project {args.project}" if args.project else ""
        print(f"{len(jobs)} job(s) selected{where}: {format_id_ranges([j.job_id for j in jobs])}")
        if not confirm(f"Are you sure to {verb} {len(jobs)} job(s)?", args.force):
            print(f"Nothing was {past}.")
            return EXIT_ABORTED
        results = action(client, [job.job_id for job in jobs])
    failed = 0
    for result in results:
        if result.ok:
            # Central's message often just repeats the verb; show it only when it adds something.
            extra = result.message and result.message.lower() != past
            print(f"Job {result.job_id}: {past}" + (f" ({result.message})" if extra else ""))
        else:
            failed += 1
            print(f"Job {result.job_id}: not {past}: {result.message or 'refused'}")
    print(f"{len(results) - failed} of {len(results)} job(s) {past}.")
    return EXIT_ERROR if failed else EXIT_OK


def job_kill_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_job_kill", lambda: _job_action("kill", argv))


def job_delete_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_job_delete", lambda: _job_action("delete", argv))


def job_reschedule_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_job_reschedule", lambda: _job_action("reschedule", argv))


# ---- gb2_job_output ----------------------------------------------------------------------------


def _fetch_output(client: CentralClient, job: jobs_pb2.JobSummary, base: Path) -> Path:
    dest = base / (job.project or "no_project") / str(job.job_id)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / ".output_sandbox.tar.gz"
    try:
        download_sandbox(client, job.output_sandbox, archive)
        extract_safely(archive, dest)
    finally:
        archive.unlink(missing_ok=True)
    return dest


def _job_output(argv: list[str] | None) -> int:
    parser = make_parser("gb2_job_output", "Download the output sandboxes (logs) of jobs.")
    _add_selection_options(parser)
    parser.add_argument("-d", "--dir", type=Path, default=Path("."), help="download directory")
    args = parser.parse_args(argv)
    if not (args.project or args.jobid):
        raise UsageError("select jobs with -p PROJECT and/or -j IDS")
    settings = ClientSettings.resolve(args.central)
    selection = _selection(args, settings)
    failed = downloaded = 0
    with CentralClient(settings) as client:
        jobs = _list_jobs(client, selection)
        if not jobs:
            print("0 jobs are selected.")
            return EXIT_OK
        for job in jobs:
            status = status_name(job.status)
            if not job.output_sandbox:
                print(f"Job {job.job_id} ({status}): no output sandbox yet")
                continue
            try:
                dest = _fetch_output(client, job, args.dir)
            except (ClientError, CliError, OSError) as exc:
                failed += 1
                print(f"Job {job.job_id} ({status}): download failed: {exc}")
                continue
            downloaded += 1
            print(f"Job {job.job_id} ({status}): output sandbox in {dest}")
    print(f"{downloaded} output sandbox(es) downloaded, {failed} failed.")
    return EXIT_ERROR if failed else EXIT_OK


def job_output_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_job_output", lambda: _job_output(argv))


# ---- gb2_project_summary -----------------------------------------------------------------------


def _project_summary(argv: list[str] | None) -> int:
    parser = make_parser("gb2_project_summary", "Job counts per project.")
    parser.add_argument("-p", "--project", help="only this project")
    parser.add_argument(
        "-u", "--user", help=f"owner of the projects (default: you; '{ALL_USERS}' for everyone)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_central_option(parser)
    args = parser.parse_args(argv)
    settings = ClientSettings.resolve(args.central)
    owner = args.user or settings.user
    with CentralClient(settings) as client:
        response: jobs_pb2.SummarizeProjectsResponse = client.call(
            client.jobs.SummarizeProjects,
            jobs_pb2.SummarizeProjectsRequest(
                project=args.project or "", owner="" if owner == ALL_USERS else owner
            ),
        )
    projects = list(response.projects)
    if args.json:
        _print_json([project_to_dict(p) for p in projects])
        return EXIT_OK
    out = console()
    if not projects:
        out.print("No project found." if not args.project else f"No project {args.project}.")
        return EXIT_OK
    out.print(projects_table(projects))
    return EXIT_OK


def project_summary_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_project_summary", lambda: _project_summary(argv))
