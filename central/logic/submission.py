"""Job submission: validate every spec, store all jobs or none, then queue them for matching."""

from __future__ import annotations

import re
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from central.config import CentralConfig
from central.logic.errors import GridpilotError, InvalidArgumentError, PermissionDeniedError
from central.logic.identity import PRODUCTION_JOB_TYPE, Caller
from central.matcher import Matcher, Requirements, encode_requirements, requirements_from_spec
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


def _owner_suffix(caller: Caller, job_type: str) -> bytes:
    """Serialized fields that, appended to a serialized spec, set who owns it.

    Protobuf merges concatenated messages field by field (the last scalar wins), so the stored
    spec is the client's bytes plus these: no per-job copy of the message. The owner is who
    called, whatever the client wrote."""
    return common_pb2.JobSpec(
        owner=caller.user, group=caller.group, job_type=job_type or DEFAULT_JOB_TYPE
    ).SerializeToString()


def _stored_spec(spec: common_pb2.JobSpec, caller: Caller, job_type: str, suffix: bytes) -> bytes:
    if (caller.group or not spec.group) and (caller.user or not spec.owner):
        return spec.SerializeToString() + suffix
    # An empty caller field serializes to nothing and would not override the client's value.
    out = common_pb2.JobSpec()
    out.CopyFrom(spec)
    out.owner, out.group, out.job_type = caller.user, caller.group, job_type
    return out.SerializeToString()


def _shape(spec: common_pb2.JobSpec) -> tuple[object, ...]:
    """Everything the task-queue key depends on (besides the owner, the same for all)."""
    return (
        tuple(spec.tags),
        spec.number_of_processors,
        spec.max_ram_mb,
        spec.cpu_time,
        tuple(spec.sites),
        tuple(spec.banned_sites),
        spec.platform,
        spec.job_type or DEFAULT_JOB_TYPE,
    )


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

    # Requirements are computed and encoded once per distinct shape, not per job: a bulk
    # submission of 100,000 jobs usually has a handful of shapes.
    keys: dict[tuple[object, ...], tuple[Requirements, bytes]] = {}
    suffixes: dict[str, bytes] = {}
    new_jobs: list[NewJob] = []
    job_keys: list[Requirements] = []
    for spec in specs:
        job_type = spec.job_type or DEFAULT_JOB_TYPE
        shape = _shape(spec)
        key = keys.get(shape)
        if key is None:
            normalized = common_pb2.JobSpec()
            normalized.CopyFrom(spec)
            normalized.job_type = job_type
            req = requirements_from_spec(normalized, caller.user, caller.group)
            key = keys[shape] = (req, encode_requirements(req))
        suffix = suffixes.get(job_type)
        if suffix is None:
            suffix = suffixes[job_type] = _owner_suffix(caller, job_type)
        new_jobs.append(
            NewJob(
                spec=_stored_spec(spec, caller, job_type, suffix),
                requirements=key[1],
                project=spec.project,
                owner=caller.user,
                group=caller.group,
                job_name=spec.job_name,
                priority=spec.priority,
                job_type=job_type,
            )
        )
        job_keys.append(key[0])
    job_ids = await store.insert_jobs(new_jobs, now)
    for job_id, job, req in zip(job_ids, new_jobs, job_keys, strict=True):
        matcher.add_key(job_id, job.priority, job.owner, job.group, req)
    log.info(
        "jobs.submitted",
        count=len(job_ids),
        first_job_id=job_ids[0],
        owner=caller.user,
        project=specs[0].project,
    )
    return job_ids


def decode_spec(data: bytes, job_id: int) -> common_pb2.JobSpec:
    spec = common_pb2.JobSpec()
    try:
        spec.ParseFromString(data)
    except DecodeError as exc:
        raise GridpilotError(f"job {job_id} has an unreadable spec: {exc}") from exc
    return spec
