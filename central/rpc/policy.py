"""Which roles may call which RPC: the one table the interceptor enforces.

A method missing from the table is refused to everyone (deny by default; a test checks that
every served method has a row). Object-level checks (whose job, which site, which pilot) are
in logic; this table only says who may knock at the door. The full matrix, with the object
rules, is in docs/security.md.
"""

from __future__ import annotations

from enum import Enum

from gridpilot.security.claims import Role


class Access(Enum):
    # No token needed (probes: health, reflection).
    PUBLIC = "public"
    # A token is verified when present; the method authenticates the rest itself
    # (IssueToken: a client certificate, an external token or a renewable user token).
    SELF_AUTHENTICATING = "self_authenticating"


R = Role
PERSONS = frozenset({R.USER, R.PRODUCTION, R.ADMIN})
ADMIN = frozenset({R.ADMIN})
EVERYONE = frozenset(Role)

_JOBS = "/gridpilot.v1.JobService/"
_PILOTS = "/gridpilot.v1.PilotService/"
_DIRECTORS = "/gridpilot.v1.SiteDirectorService/"
_DATA = "/gridpilot.v1.DataService/"
_SANDBOXES = "/gridpilot.v1.SandboxService/"
_AUTH = "/gridpilot.v1.AuthService/"
_ADMIN = "/gridpilot.v1.AdminService/"

# Administrators may call everything; it is spelled out per row so the table reads alone.
POLICY: dict[str, frozenset[Role] | Access] = {
    # Users and production managers: their jobs; a job token may read its own job.
    _JOBS + "SubmitJobs": PERSONS,
    _JOBS + "ListJobs": PERSONS,
    _JOBS + "GetJob": PERSONS | {R.JOB},
    _JOBS + "KillJobs": PERSONS,
    _JOBS + "DeleteJobs": PERSONS,
    _JOBS + "RescheduleJobs": PERSONS,
    _JOBS + "SummarizeProjects": PERSONS,
    # Pilots: bound to their pilot id, site and CE; jobs report with their job token, and a
    # pilot may finish a job it was matched (when its wrapper died).
    _PILOTS + "RegisterPilot": frozenset({R.PILOT_REGISTRATION, R.ADMIN}),
    _PILOTS + "RequestJob": frozenset({R.PILOT, R.ADMIN}),
    _PILOTS + "PilotSession": frozenset({R.PILOT, R.ADMIN}),
    _PILOTS + "ReportJobStatus": frozenset({R.JOB, R.PILOT, R.ADMIN}),
    _PILOTS + "FinishJob": frozenset({R.JOB, R.PILOT, R.ADMIN}),
    _PILOTS + "ReportPilotEnd": frozenset({R.PILOT, R.ADMIN}),
    # Site directors: their sites only.
    _DIRECTORS + "GetPilotDemand": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    _DIRECTORS + "RecordPilots": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    _DIRECTORS + "UpdatePilots": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    _DIRECTORS + "ListPilots": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    _DIRECTORS + "ReportQueues": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    _DIRECTORS + "ListQueues": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    # Data: reading the catalog is open to every working identity; writing is scoped.
    _DATA + "ListStorageElements": EVERYONE - {R.PILOT_REGISTRATION},
    _DATA + "SetStorageElementStatus": ADMIN,
    _DATA + "GetReplicas": PERSONS | {R.JOB, R.PILOT},
    _DATA + "RegisterReplicas": PERSONS | {R.JOB},
    _DATA + "ListDataset": PERSONS | {R.JOB},
    _DATA + "AddFailoverRequest": frozenset({R.JOB, R.ADMIN}),
    _DATA + "ListFailoverRequests": PERSONS,
    _DATA + "ReportDataAccess": PERSONS | {R.JOB},
    _DATA + "RemoveFiles": PERSONS,
    _SANDBOXES + "UploadSandbox": PERSONS | {R.JOB},
    _SANDBOXES + "DownloadSandbox": PERSONS | {R.JOB},
    # Tokens.
    _AUTH + "IssueToken": Access.SELF_AUTHENTICATING,
    _AUTH + "WhoAmI": EVERYONE,
    _AUTH + "MintPilotTokens": frozenset({R.SITE_DIRECTOR, R.ADMIN}),
    _AUTH + "IssueServiceToken": ADMIN,
    # Operators.
    _ADMIN + "Revoke": ADMIN,
    _ADMIN + "ListRevocations": ADMIN,
    _ADMIN + "SetSiteBanned": ADMIN,
    _ADMIN + "SetUserBanned": ADMIN,
    _ADMIN + "DrainPilots": ADMIN,
}

# Standard services every probe and tool may use without a token.
PUBLIC_SERVICES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def access_of(method: str) -> frozenset[Role] | Access | None:
    """The roles allowed to call `method` (full name "/pkg.Service/Method"), an Access mode,
    or None when the method is not in the table (refused)."""
    if method.startswith(PUBLIC_SERVICES):
        return Access.PUBLIC
    return POLICY.get(method)


def short_name(method: str) -> str:
    """ "/gridpilot.v1.JobService/KillJobs" -> "JobService.KillJobs" for messages."""
    service, _, name = method.strip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}.{name}"
