"""Object-level checks of bound credentials: pilots (pilot id, site, CE), jobs (job id and
attempt) and site directors (their sites).

The policy table (central/rpc/policy.py) has let the caller's role in; these decide whether
this caller may touch this pilot, job or site. Each raises PermissionDeniedError before
anything changes. Administrators pass every check.
"""

from __future__ import annotations

from collections.abc import Iterable

from central.logic.errors import NotFoundError, PermissionDeniedError
from central.logic.identity import Caller
from central.matcher import Resources
from central.store.interface import Store
from central.store.records import FailoverRequestRecord, JobRecord
from gridpilot.security.claims import Role


def check_pilot_resources(caller: Caller, resources: Resources) -> None:
    """A pilot (or its registration token) offers only the site, CE and queue it is bound to."""
    if caller.is_admin:
        return
    offered = {"site": resources.site, "ce": resources.ce, "queue": resources.queue}
    bound = {"site": caller.site, "ce": caller.ce, "queue": caller.queue}
    for name, value in offered.items():
        # A token without a queue binding serves every queue of its CE.
        if (bound[name] or name != "queue") and value != bound[name]:
            raise PermissionDeniedError(
                f"{caller.describe()} is bound to {name} {bound[name]!r}, "
                f"not {value!r}: request refused"
            )


def check_pilot_id(caller: Caller, pilot_id: str) -> None:
    """A pilot session token speaks only for its own pilot id."""
    if caller.is_admin or (caller.role is Role.PILOT and pilot_id == caller.pilot_id):
        return
    raise PermissionDeniedError(f"{caller.describe()} may not act for pilot {pilot_id!r}")


async def check_job_report(store: Store, caller: Caller, job_id: int, attempt: int) -> None:
    """Reports of one attempt: its job token, or the pilot that was matched that attempt.

    A stale attempt is left to the report logic, which refuses it (FAILED_PRECONDITION)."""
    if caller.is_admin:
        return
    if caller.role is Role.JOB:
        if job_id != caller.job_id or attempt != caller.attempt:
            raise PermissionDeniedError(
                f"{caller.describe()} may not report for job {job_id} attempt {attempt}"
            )
        return
    job = await store.get_job(job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if job.attempt == attempt and job.pilot_id != caller.pilot_id:
        raise PermissionDeniedError(
            f"{caller.describe()} was not matched job {job_id}: report refused"
        )


def check_job_token(caller: Caller, job_id: int, what: str) -> None:
    """A job token touches only its own job (replicas, failover requests...)."""
    if caller.role is Role.JOB and job_id != caller.job_id:
        raise PermissionDeniedError(f"{caller.describe()} may not {what} for job {job_id}")


def check_sites(caller: Caller, sites: Iterable[str], what: str) -> None:
    """A site director acts only for the sites in its token."""
    for site in sites:
        if not caller.may_act_for_site(site):
            raise PermissionDeniedError(
                f"{caller.describe()} may not {what} for site {site!r} "
                f"(its token covers {', '.join(caller.sites) or 'no site'})"
            )


def check_visible(caller: Caller, job: JobRecord) -> None:
    if not caller.may_see(job):
        raise PermissionDeniedError(f"{caller.describe()} may not see job {job.job_id}")


async def check_pilot_updates(store: Store, caller: Caller, pilot_ids: Iterable[str]) -> None:
    """A site director updates only pilots of its sites (unknown ids are ignored later)."""
    if caller.is_admin:
        return
    for pilot_id in pilot_ids:
        pilot = await store.get_pilot(pilot_id)
        if pilot is not None and not caller.may_act_for_site(pilot.site):
            raise PermissionDeniedError(
                f"{caller.describe()} may not update pilot {pilot_id} of site {pilot.site!r}"
            )


# Users write their own files only under /belle/user/<name>/ (gbasf2's layout).
USER_LFN_ROOT = "/belle/user"


async def check_replica_registrations(
    store: Store, caller: Caller, lfns_and_jobs: Iterable[tuple[str, int]]
) -> None:
    """Who may add catalog entries: a job token for its own job's files; a user under their
    own LFN directory (and for their own jobs); production managers and admins anywhere."""
    if caller.is_admin or caller.is_production:
        return
    for lfn, job_id in lfns_and_jobs:
        if caller.role is Role.JOB:
            check_job_token(caller, job_id, "register replicas")
            continue
        home = f"{USER_LFN_ROOT}/{caller.subject}/"
        if not lfn.startswith(home):
            raise PermissionDeniedError(
                f"{caller.describe()} may register files only under {home}, not {lfn!r}"
            )
        if job_id:
            job = await store.get_job(job_id)
            if job is None or not caller.may_manage(job):
                raise PermissionDeniedError(
                    f"{caller.describe()} may not register files of job {job_id}"
                )


async def check_job_reporter(store: Store, caller: Caller, job_id: int) -> JobRecord:
    """Transfer reports come from a job's own token (its site is the job's); the job."""
    if caller.role is not Role.JOB and not caller.is_admin:
        raise PermissionDeniedError(
            f"{caller.describe()} may not report transfers: only a job's wrapper does"
        )
    check_job_token(caller, job_id, "report data access")
    job = await store.get_job(job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return job


def check_request_owner(caller: Caller, requests: Iterable[FailoverRequestRecord]) -> None:
    """People may look up by id only the data requests they made themselves."""
    if caller.is_admin:
        return
    for r in requests:
        if r.owner != caller.subject:
            raise PermissionDeniedError(
                f"{caller.describe()} may not see data request {r.request_id}"
            )


def check_lfn_owner(caller: Caller, lfn: str, what: str) -> None:
    """Users may change files only under their own LFN directory; production managers and
    administrators anywhere."""
    if caller.is_admin or caller.is_production:
        return
    home = f"{USER_LFN_ROOT}/{caller.subject}/"
    if caller.role is Role.JOB or not lfn.startswith(home):
        raise PermissionDeniedError(
            f"{caller.describe()} may {what} only under {home}, not {lfn!r}"
        )


async def check_job_visible(store: Store, caller: Caller, job_id: int, what: str) -> None:
    """Per-job queries (failover requests): a person names a job they may see."""
    if caller.is_admin:
        return
    if not job_id:
        raise PermissionDeniedError(f"{caller.describe()} must name a job to list {what}")
    job = await store.get_job(job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    check_visible(caller, job)
