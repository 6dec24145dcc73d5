"""Job submission: validate every spec, store all jobs or none, then queue them for matching."""

from __future__ import annotations

import re
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from central.config import CentralConfig
from central.logic.errors import GridpilotError, InvalidArgumentError, PermissionDeniedError
from central.logic.identity import PRODUCTION_JOB_TYPE, Caller
from central.matcher import Matcher, encode_requirements, requirements_from_spec
from central.store.interface import Store
from central.store.records import NewJob
from gridpilot.logs import get_logger
from gridpilot.v1 import common_pb2

log = get_logger(__name__)

PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
JOB_TYPES = ("User", PRODUCTION_JOB_TYPE)
DEFAULT_JOB_TYPE = "User"
MIN_PRIORITY, MAX_PRIORITY = 0, 10
# Reported problems are capped so one bad batch of 100k jobs does not produce a huge message.
_MAX_PROBLEMS = 20


def _spec_problems(spec: common_pb2.JobSpec, config: CentralConfig) -> list[str]:
    problems: list[str] = []
    if not PROJECT_RE.match(spec.project):
        problems.append(f"project name {spec.project!r} must be 1-32 letters, digits, '_' or '-'")
    if not MIN_PRIORITY <= spec.priority <= MAX_PRIORITY:
        problems.append(f"priority {spec.priority} is outside {MIN_PRIORITY}-{MAX_PRIORITY}")
    if spec.job_type and spec.job_type not in JOB_TYPES:
        problems.append(f"job type {spec.job_type!r} is not one of {', '.join(JOB_TYPES)}")
    if not spec.release.strip():
        problems.append("release is empty")
    if spec.cpu_time < 0:
        problems.append(f"cpu_time {spec.cpu_time} is negative")
    if spec.number_of_processors < 0:
        problems.append(f"number_of_processors {spec.number_of_processors} is negative")
    if spec.max_ram_mb < 0:
        problems.append(f"max_ram_mb {spec.max_ram_mb} is negative")
    for field, sites in (("site", spec.sites), ("banned site", spec.banned_sites)):
        problems.extend(f"unknown {field} {s!r}" for s in sites if config.site(s) is None)
    if spec.output_se and config.storage_element(spec.output_se) is None:
        problems.append(f"unknown output SE {spec.output_se!r}")
    return problems


def _normalized(spec: common_pb2.JobSpec, caller: Caller) -> common_pb2.JobSpec:
    out = common_pb2.JobSpec()
    out.CopyFrom(spec)
    # The owner is who called, whatever the client wrote.
    out.owner = caller.user
    out.group = caller.group
    out.job_type = spec.job_type or DEFAULT_JOB_TYPE
    return out


async def _check_references(store: Store, specs: Sequence[common_pb2.JobSpec]) -> list[str]:
    """Problems with what the specs point to: input LFNs and sandboxes."""
    problems: list[str] = []
    lfns = sorted({lfn for spec in specs for lfn in spec.input_lfns})
    if lfns:
        known = await store.get_files(lfns)
        problems.extend(f"unknown input LFN {lfn!r}" for lfn in lfns if lfn not in known)
    for sandbox_id in sorted({s.input_sandbox for s in specs if s.input_sandbox}):
        if await store.get_sandbox(sandbox_id) is None:
            problems.append(f"unknown input sandbox {sandbox_id!r}")
    return problems


def _raise_problems(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS]
    more = len(problems) - len(shown)
    text = "; ".join(shown) + (f"; and {more} more" if more else "")
    raise InvalidArgumentError(f"submission refused, nothing stored: {text}")


async def submit_jobs(
    store: Store,
    matcher: Matcher,
    config: CentralConfig,
    *,
    caller: Caller,
    specs: Sequence[common_pb2.JobSpec],
    now: float,
) -> list[int]:
    """Validate all specs, insert all jobs as Waiting in one transaction and queue them."""
    if not specs:
        raise InvalidArgumentError("no jobs to submit")
    if not (caller.is_admin or caller.is_production) and any(
        spec.job_type == PRODUCTION_JOB_TYPE for spec in specs
    ):
        raise PermissionDeniedError(
            f"{caller.describe()} may not submit {PRODUCTION_JOB_TYPE} jobs "
            "(production managers and administrators only); nothing stored"
        )
    problems: list[str] = []
    for index, spec in enumerate(specs):
        prefix = f"job {index}: " if len(specs) > 1 else ""
        problems.extend(prefix + p for p in _spec_problems(spec, config))
    _raise_problems(problems)
    _raise_problems(await _check_references(store, specs))

    normalized = [_normalized(spec, caller) for spec in specs]
    new_jobs = [
        NewJob(
            spec=spec.SerializeToString(),
            requirements=encode_requirements(
                requirements_from_spec(spec, caller.user, caller.group)
            ),
            project=spec.project,
            owner=caller.user,
            group=caller.group,
            job_name=spec.job_name,
            priority=spec.priority,
            job_type=spec.job_type,
        )
        for spec in normalized
    ]
    job_ids = await store.insert_jobs(new_jobs, now)
    for job_id, job in zip(job_ids, new_jobs, strict=True):
        matcher.add(job_id, job.priority, job.owner, job.group, job.requirements)
    log.info(
        "jobs.submitted",
        count=len(job_ids),
        first_job_id=job_ids[0],
        owner=caller.user,
        project=normalized[0].project,
    )
    return job_ids


def decode_spec(data: bytes, job_id: int) -> common_pb2.JobSpec:
    spec = common_pb2.JobSpec()
    try:
        spec.ParseFromString(data)
    except DecodeError as exc:
        raise GridpilotError(f"job {job_id} has an unreadable spec: {exc}") from exc
    return spec
