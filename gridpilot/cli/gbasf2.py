"""`gbasf2`: submit a project of basf2 jobs, one per input file (or N repetitions without input).

    gbasf2 steering.py -p myproject -s release-08-00-00 -i /belle/MC/.../sub00 [--force]

Everything that can be checked locally is checked before central is contacted; the user confirms
a summary before anything is uploaded; all jobs go in one SubmitJobs call (all or none).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from gridpilot.channel import MAX_MESSAGE_BYTES
from gridpilot.cli.common import (
    EXIT_ABORTED,
    EXIT_OK,
    CliError,
    UsageError,
    add_central_option,
    confirm,
    format_id_ranges,
    make_parser,
    run_command,
    split_names,
)
from gridpilot.cli.datasets import list_dataset
from gridpilot.cli.sandbox import build_input_sandbox, upload_input_sandbox
from gridpilot.client import CentralClient
from gridpilot.client_errors import CentralRequestError
from gridpilot.client_settings import ClientSettings
from gridpilot.v1 import common_pb2, jobs_pb2

PROG = "gbasf2"
PROJECT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
JOB_TYPES = ("User", "Production")
# DIRAC's default job priority.
DEFAULT_PRIORITY = 1
# Leave room for the request's framing below the channel's message cap.
_SUBMIT_LIMIT_BYTES = MAX_MESSAGE_BYTES - 64 * 1024


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Submit a project of basf2 jobs to the grid.")
    p.add_argument("steering_file", metavar="STEERING.py", help="basf2 steering file")
    p.add_argument("-p", "--project", required=True, help="project name ([A-Za-z0-9_-], <= 32)")
    p.add_argument("-s", "--release", required=True, help="basf2 release, e.g. release-08-00-00")
    p.add_argument(
        "-i",
        "--input_ds",
        action="append",
        default=[],
        metavar="DATASET_LPN",
        help="input dataset (logical path name); repeatable",
    )
    p.add_argument("--input_dslist", type=Path, metavar="FILE", help="file with one LPN a line")
    p.add_argument(
        "-f",
        "--input_sandboxfiles",
        nargs="+",
        default=[],
        type=Path,
        metavar="FILE",
        help="extra files shipped with the steering file",
    )
    p.add_argument("--cputime", type=int, metavar="MIN", help="CPU time per job in minutes")
    p.add_argument("--priority", type=int, default=DEFAULT_PRIORITY, help="0 (low) to 10 (high)")
    p.add_argument("--jobtype", choices=JOB_TYPES, default="User")
    p.add_argument("--repetition", type=int, metavar="N", help="N jobs without input data")
    p.add_argument("--site", action="append", metavar="SITE", help="run only at these sites")
    p.add_argument("--banned_site", action="append", metavar="SITE", help="never at these sites")
    p.add_argument("--basf2opt", default="", metavar="'OPTIONS'", help="options for basf2")
    p.add_argument("--force", action="store_true", help="submit without asking")
    add_central_option(p)
    return p


@dataclass(frozen=True)
class Submission:
    """A validated submission request, before central is asked anything."""

    steering_file: Path
    extra_files: tuple[Path, ...]
    project: str
    release: str
    datasets: tuple[str, ...]
    repetition: int
    cpu_seconds: int
    priority: int
    job_type: str
    sites: tuple[str, ...]
    banned_sites: tuple[str, ...]
    basf2_options: str


def _read_dslist(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read --input_dslist {path}: {exc.strerror or exc}") from exc
    lpns = [line.strip() for line in lines]
    lpns = [lpn for lpn in lpns if lpn and not lpn.startswith("#")]
    if not lpns:
        raise UsageError(f"--input_dslist {path} lists no dataset")
    return lpns


def validate(args: argparse.Namespace) -> Submission:
    """Every check that needs no central; raises UsageError with one clear line."""
    steering = Path(args.steering_file)
    if not steering.is_file():
        raise UsageError(f"steering file not found: {steering}")
    if not PROJECT_NAME_RE.match(args.project):
        raise UsageError(
            f"bad project name {args.project!r}: use letters, digits, '_' or '-', at most 32"
        )
    if not args.release.strip():
        raise UsageError("empty software release (-s)")
    if not 0 <= args.priority <= 10:
        raise UsageError(f"priority must be between 0 and 10, got {args.priority}")
    if args.cputime is not None and args.cputime <= 0:
        raise UsageError(f"--cputime must be a positive number of minutes, got {args.cputime}")
    for extra in args.input_sandboxfiles:
        if not extra.exists():
            raise UsageError(f"input sandbox file not found: {extra}")
    datasets = [lpn.strip() for lpn in args.input_ds]
    if args.input_dslist is not None:
        datasets += _read_dslist(args.input_dslist)
    for lpn in datasets:
        if not lpn.startswith("/"):
            raise UsageError(f"dataset {lpn!r} is not a logical path name (starts with '/')")
    if args.repetition is not None:
        if args.repetition <= 0:
            raise UsageError(f"--repetition must be positive, got {args.repetition}")
        if datasets:
            raise UsageError("--repetition is for jobs without input; drop -i/--input_dslist")
    sites = split_names(args.site)
    banned = split_names(args.banned_site)
    both = sorted(set(sites) & set(banned))
    if both:
        raise UsageError(f"site(s) both requested and banned: {', '.join(both)}")
    return Submission(
        steering_file=steering,
        extra_files=tuple(args.input_sandboxfiles),
        project=args.project,
        release=args.release.strip(),
        datasets=tuple(dict.fromkeys(datasets)),
        repetition=args.repetition or 1,
        cpu_seconds=(args.cputime or 0) * 60,
        priority=args.priority,
        job_type=args.jobtype,
        sites=tuple(sites),
        banned_sites=tuple(banned),
        basf2_options=args.basf2opt,
    )


def resolve_input_files(client: CentralClient, datasets: tuple[str, ...]) -> list[str]:
    """Every file of every dataset, in catalog order, each once."""
    lfns: dict[str, None] = {}
    for lpn in datasets:
        for f in list_dataset(client, lpn):
            lfns.setdefault(f.lfn, None)
    return list(lfns)


def build_specs(
    sub: Submission, input_lfns: list[str], sandbox_id: str
) -> list[common_pb2.JobSpec]:
    inputs: list[list[str]] = [[lfn] for lfn in input_lfns] or [[] for _ in range(sub.repetition)]
    width = max(3, len(str(len(inputs))))
    return [
        common_pb2.JobSpec(
            project=sub.project,
            job_name=f"{sub.project}_{index:0{width}d}",
            release=sub.release,
            steering_file=sub.steering_file.name,
            basf2_options=sub.basf2_options,
            input_lfns=lfns,
            input_sandbox=sandbox_id,
            cpu_time=sub.cpu_seconds,
            priority=sub.priority,
            job_type=sub.job_type,
            sites=list(sub.sites),
            banned_sites=list(sub.banned_sites),
        )
        for index, lfns in enumerate(inputs)
    ]


def summary_lines(sub: Submission, settings: ClientSettings, input_lfns: list[str]) -> list[str]:
    n_jobs = len(input_lfns) or sub.repetition
    cpu = f"{sub.cpu_seconds // 60} min" if sub.cpu_seconds else "central default"
    lines = [
        "*" * 60,
        "** Project summary",
        f"** Project name: {sub.project}",
        f"** Owner: {settings.user} ({settings.group})",
        f"** Steering file: {sub.steering_file}",
        f"** Software release: {sub.release}",
    ]
    if sub.extra_files:
        lines.append(f"** Extra input sandbox files: {', '.join(map(str, sub.extra_files))}")
    if sub.datasets:
        lines += [f"** Input dataset: {lpn}" for lpn in sub.datasets]
        lines.append(f"** Number of input files: {len(input_lfns)}")
        lines.append(f"** Input file of the first job: {input_lfns[0]}")
    else:
        lines.append("** Input data: none")
    lines += [
        f"** Number of jobs: {n_jobs}",
        f"** Job type: {sub.job_type}, priority {sub.priority}, CPU time per job: {cpu}",
        f"** Sites: {', '.join(sub.sites) or 'any'}",
    ]
    if sub.banned_sites:
        lines.append(f"** Banned sites: {', '.join(sub.banned_sites)}")
    if sub.basf2_options:
        lines.append(f"** basf2 options: {sub.basf2_options}")
    lines.append("*" * 60)
    return lines


def submit(args: argparse.Namespace) -> int:
    sub = validate(args)
    # Reading the local files is also a local check: do it before talking to central.
    sandbox = build_input_sandbox(sub.steering_file, sub.extra_files)
    settings = ClientSettings.resolve(args.central)
    with CentralClient(settings) as client:
        input_lfns = resolve_input_files(client, sub.datasets)
        print("\n".join(summary_lines(sub, settings, input_lfns)))
        if not confirm("Are you sure to submit the project?", args.force):
            print("Submission cancelled: nothing was submitted.")
            return EXIT_ABORTED
        sandbox_id = upload_input_sandbox(client, sandbox)
        request = jobs_pb2.SubmitJobsRequest(jobs=build_specs(sub, input_lfns, sandbox_id))
        if request.ByteSize() > _SUBMIT_LIMIT_BYTES:
            raise CliError(
                f"{len(request.jobs)} jobs do not fit one submission "
                f"({request.ByteSize() // 1_000_000} MB); split the input datasets"
            )
        try:
            response: jobs_pb2.SubmitJobsResponse = client.call(
                client.jobs.SubmitJobs,
                request,
                timeout=settings.timeout + len(request.jobs) / 1000,
            )
        except CentralRequestError as exc:
            # Central's message already says the submission was refused and why.
            raise CliError(str(exc)) from exc
    ids = list(response.job_ids)
    print(f"{len(ids)} job(s) submitted to project {sub.project}: job ids {format_id_ranges(ids)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, lambda: submit(build_parser().parse_args(argv)))
