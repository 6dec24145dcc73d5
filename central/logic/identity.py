"""Who is calling: the verified token of the call, as logic needs it.

The RPC interceptor verifies the bearer token and puts a `Caller` in `current_caller` for the
call. Logic asks the caller, never the token: what it may see and manage is decided here, in
one place (see docs/security.md for the matrix).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from central.store.records import JobRecord, JobScope
from gridpilot.security.claims import Claims, Role

PRODUCTION_JOB_TYPE = "Production"

# Roles a person holds (through a user token); the others are services and credentials.
PERSON_ROLES: frozenset[Role] = frozenset({Role.USER, Role.PRODUCTION, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    role: Role
    group: str = ""
    vo: str = "belle"
    # Site director: the sites it may act for.
    sites: tuple[str, ...] = ()
    # Pilot registration / pilot session: where the pilot runs.
    site: str = ""
    ce: str = ""
    queue: str = ""
    pilot_id: str = ""
    # Job token: one job, one attempt.
    job_id: int = 0
    attempt: int = 0
    jti: str = ""
    expires: float = 0.0
    issuer: str = ""
    # The caller's group shares its jobs (config [[groups]] job_sharing).
    job_sharing: bool = False

    @classmethod
    def from_claims(cls, claims: Claims, *, job_sharing: bool = False) -> Caller:
        return cls(
            subject=claims.sub,
            role=claims.role,
            group=claims.group,
            vo=claims.vo,
            sites=tuple(claims.sites),
            site=claims.site,
            ce=claims.ce,
            queue=claims.queue,
            pilot_id=claims.pilot_id,
            job_id=claims.job_id,
            attempt=claims.attempt,
            jti=claims.jti,
            expires=float(claims.exp),
            issuer=claims.iss,
            job_sharing=job_sharing,
        )

    @property
    def user(self) -> str:
        """The person's name (a token's subject)."""
        return self.subject

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_production(self) -> bool:
        return self.role is Role.PRODUCTION

    @property
    def is_person(self) -> bool:
        return self.role in PERSON_ROLES

    @property
    def source(self) -> str:
        """How job history names this caller."""
        if self.role is Role.PILOT:
            return f"pilot:{self.pilot_id}"
        if self.role is Role.JOB:
            return "JobWrapper"
        if self.role is Role.SITE_DIRECTOR:
            return f"director:{self.subject}"
        return f"user:{self.subject}"

    def describe(self) -> str:
        """The caller in an error message, e.g. "user alice" or "pilot p-1"."""
        if self.role is Role.PILOT:
            return f"pilot {self.pilot_id}"
        if self.role is Role.JOB:
            return f"the token of job {self.job_id} attempt {self.attempt}"
        return f"{self.role.value.replace('_', ' ')} {self.subject}"

    # ---- jobs ----------------------------------------------------------------------------

    def may_manage(self, job: JobRecord) -> bool:
        """Kill, delete, reschedule: the owner; production managers every production job."""
        if self.is_admin:
            return True
        if not self.is_person:
            return False
        if job.owner == self.subject:
            return True
        return self.is_production and job.job_type == PRODUCTION_JOB_TYPE

    def may_see(self, job: JobRecord) -> bool:
        """List, get, download: what it may manage, plus its group's jobs with job sharing;
        a job token sees its own job."""
        if self.role is Role.JOB:
            return job.job_id == self.job_id
        if self.may_manage(job):
            return True
        return self.is_person and self.job_sharing and job.group == self.group

    def see_scope(self) -> JobScope | None:
        """The store filter of `may_see` for a person; None for administrators (everything)."""
        if self.is_admin:
            return None
        return JobScope(
            owner=self.subject,
            group=self.group if self.job_sharing else "",
            job_type=PRODUCTION_JOB_TYPE if self.is_production else "",
        )

    def manage_scope(self) -> JobScope | None:
        """The store filter of `may_manage` for a person; None for administrators."""
        if self.is_admin:
            return None
        return JobScope(
            owner=self.subject, job_type=PRODUCTION_JOB_TYPE if self.is_production else ""
        )

    # ---- sites and pilots ----------------------------------------------------------------

    def may_act_for_site(self, site: str) -> bool:
        """Site directors: the sites in their token; administrators: every site."""
        if self.is_admin:
            return True
        if self.role is Role.SITE_DIRECTOR:
            return site in self.sites
        return False


# Internal work (agents, start-up) acts as central itself.
CENTRAL = Caller(subject="central", role=Role.ADMIN, group="belle_admin")

# Set by the RPC interceptor for the duration of one call. The default is for calls that
# need no identity (health, reflection); logic that needs one is never reached without it.
current_caller: ContextVar[Caller | None] = ContextVar("current_caller", default=None)


def require_caller() -> Caller:
    caller = current_caller.get()
    if caller is None:
        raise RuntimeError("no authenticated caller for this call (interceptor missing?)")
    return caller
