"""Tokens central hands out: user login, pilot registration and session, service tokens.

Job tokens are minted at each match (pilot_flow's caller) and pilot session tokens at
registration; both go through `Security`. Every function here checks who asks first and
raises before anything is issued or spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from central.auth.runtime import Security
from central.config import CentralConfig
from central.logic.access import check_pilot_resources, check_sites
from central.logic.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from central.logic.identity import Caller
from central.matcher import Resources
from central.store.interface import Store
from gridpilot.logs import get_logger
from gridpilot.security.claims import Claims, Role

log = get_logger(__name__)

MAX_PILOT_TOKENS_PER_CALL = 1000
SERVICE_ROLES: dict[str, Role] = {
    "site_director": Role.SITE_DIRECTOR,
    "production": Role.PRODUCTION,
    "admin": Role.ADMIN,
}
_DEFAULT_SERVICE_GROUPS = {Role.PRODUCTION: "belle_production", Role.ADMIN: "belle_admin"}


def _lifetime(requested: float, default: float, cap: float) -> float:
    if requested < 0:
        raise InvalidArgumentError(f"lifetime {requested} is negative")
    return min(requested or default, cap)


@dataclass(frozen=True, slots=True)
class _Login:
    name: str
    groups: tuple[str, ...]


def _login(config: CentralConfig, caller: Caller | None, cert_subject: str | None) -> _Login:
    """Who asks for a user token, and which groups they may ask for (the first: default)."""
    if caller is not None:
        if not caller.is_person:
            raise PermissionDeniedError(f"{caller.describe()} cannot get a user token")
        if caller.issuer != config.security.issuer:
            # The external issuer (IAM) decided the group; only that one.
            return _Login(caller.subject, (caller.group,))
        user = config.user(caller.subject)
        extra = tuple(g for g in user.groups if g != caller.group) if user else ()
        return _Login(caller.subject, (caller.group, *extra))
    if cert_subject is not None:
        user = config.user_by_subject(cert_subject)
        if user is None:
            raise PermissionDeniedError(
                f"certificate subject {cert_subject!r} is not a configured user"
            )
        return _Login(user.name, tuple(user.groups))
    raise UnauthenticatedError(
        "IssueToken needs proof of who you are: a client certificate on central's login "
        "port, an external issuer's token, or a still-valid user token"
    )


def issue_user_token(
    security: Security,
    config: CentralConfig,
    *,
    caller: Caller | None,
    cert_subject: str | None,
    group: str,
    lifetime: float,
) -> tuple[str, Claims]:
    """gb2_proxy_init: a user token for one of the user's groups."""
    login = _login(config, caller, cert_subject)
    if security.bans.user_banned(login.name):
        raise PermissionDeniedError(f"user {login.name} is banned")
    group = group or login.groups[0]
    if group not in login.groups:
        raise PermissionDeniedError(
            f"user {login.name} may not act in group {group!r} (groups: {', '.join(login.groups)})"
        )
    if security.group_role(group) is None:
        raise InvalidArgumentError(f"group {group!r} is not configured")
    sec = config.security
    life = _lifetime(lifetime, sec.user_token_lifetime, sec.max_user_token_lifetime)
    token, claims = security.user_token(login.name, group, life)
    how = "renewal" if caller else "certificate"
    log.info("token.user_issued", sub=login.name, group=group, jti=claims.jti, via=how)
    return token, claims


def mint_pilot_tokens(
    security: Security,
    config: CentralConfig,
    *,
    caller: Caller,
    resources: Resources,
    count: int,
    lifetime: float,
) -> tuple[list[str], float]:
    """Single-use registration tokens for pilots of one of the director's queues."""
    check_sites(caller, [resources.site], "mint pilot registration tokens")
    if not 1 <= count <= MAX_PILOT_TOKENS_PER_CALL:
        raise InvalidArgumentError(
            f"count {count} is outside 1-{MAX_PILOT_TOKENS_PER_CALL} tokens per call"
        )
    site = config.site(resources.site)
    if site is None:
        raise InvalidArgumentError(f"unknown site {resources.site!r}")
    if not resources.ce:
        raise InvalidArgumentError("a registration token is bound to a CE: ce is empty")
    ce = next((c for c in site.ces if c.name == resources.ce), None)
    if site.ces and ce is None:
        raise InvalidArgumentError(f"site {site.name!r} has no CE {resources.ce!r}")
    if resources.queue and ce is not None and ce.queues and resources.queue not in ce.queues:
        raise InvalidArgumentError(f"CE {resources.ce!r} has no queue {resources.queue!r}")
    sec = config.security
    life = _lifetime(lifetime, sec.registration_token_lifetime, sec.max_registration_token_lifetime)
    tokens: list[str] = []
    expires = 0.0
    for _ in range(count):
        token, claims = security.registration_token(
            caller.subject, resources.site, resources.ce, resources.queue, life
        )
        tokens.append(token)
        expires = float(claims.exp)
    log.info(
        "token.registration_minted",
        director=caller.subject,
        site=resources.site,
        ce=resources.ce,
        count=count,
    )
    return tokens, expires


def issue_service_token(
    security: Security,
    config: CentralConfig,
    *,
    subject: str,
    role_name: str,
    group: str,
    sites: Sequence[str],
    lifetime: float,
) -> tuple[str, Claims]:
    """An administrator's token for a site director, production manager or administrator."""
    role = SERVICE_ROLES.get(role_name)
    if role is None:
        raise InvalidArgumentError(f"role {role_name!r} is not one of {', '.join(SERVICE_ROLES)}")
    if not subject:
        raise InvalidArgumentError("a service token needs a subject")
    if role is Role.SITE_DIRECTOR:
        if not sites:
            raise InvalidArgumentError("a site director token needs its sites")
        unknown = [s for s in sites if config.site(s) is None]
        if unknown:
            raise InvalidArgumentError(f"unknown site(s): {', '.join(unknown)}")
        group = ""
    else:
        group = group or _DEFAULT_SERVICE_GROUPS[role]
        if security.group_role(group) is not role:
            raise InvalidArgumentError(f"group {group!r} is not a configured {role_name} group")
    cap = config.security.service_token_max_lifetime
    token, claims = security.issuer.issue(
        sub=subject,
        role=role,
        group=group,
        sites=list(sites) if role is Role.SITE_DIRECTOR else [],
        lifetime=_lifetime(lifetime, cap, cap),
    )
    security.remember(token, claims)
    log.info("token.service_issued", sub=subject, role=role.value, jti=claims.jti)
    return token, claims


async def admit_pilot(
    store: Store,
    security: Security,
    config: CentralConfig,
    caller: Caller,
    *,
    pilot_id: str,
    resources: Resources,
) -> None:
    """Check a registering pilot against its registration token, then spend the token for
    good (durably, before the answer): a replay is refused even after a restart."""
    if config.site(resources.site) is None:
        raise InvalidArgumentError(f"unknown site {resources.site!r}")
    check_pilot_resources(caller, resources)
    if pilot_id and not caller.is_admin:
        known = await store.get_pilot(pilot_id)
        if known is not None and known.site != resources.site:
            raise PermissionDeniedError(
                f"pilot {pilot_id} was recorded for site {known.site!r}, not {resources.site!r}"
            )
    if caller.role is not Role.PILOT_REGISTRATION:
        return
    if not await store.consume_registration(caller.jti, caller.expires):
        raise UnauthenticatedError(
            f"registration token already used (token {caller.jti} is single-use)"
        )
    security.revocations.mark_used(caller.jti, caller.expires)
