"""Operators' actions: revocations, site and user bans, draining pilots.

Each change is stored before the in-memory state (verifier, matcher) follows it, and before
the RPC answers: a revocation or ban acknowledged is one that survives a restart.
"""

from __future__ import annotations

from collections.abc import Sequence

from central.auth.revocations import RevocationKind
from central.auth.runtime import Security
from central.config import CentralConfig
from central.logic.errors import InvalidArgumentError, NotFoundError
from central.logic.sessions import Command, CommandKind, SessionRegistry
from central.matcher import Matcher
from central.models.pilot_states import PilotState
from central.store.interface import Store
from central.store.records import BanRecord, PilotFilter, RevocationRecord
from gridpilot.logs import get_logger

log = get_logger(__name__)

DRAIN_REASON = "drained by an administrator"


async def revoke(
    store: Store,
    security: Security,
    *,
    kind: RevocationKind,
    value: str,
    reason: str,
    by: str,
    now: float,
) -> RevocationRecord:
    if not value:
        raise InvalidArgumentError(f"revoke: the {kind.value} to revoke is empty")
    stored = await store.add_revocation(
        RevocationRecord(kind=kind.value, value=value, reason=reason, created=now)
    )
    security.revocations.add(stored)
    log.info("security.revoked", kind=kind.value, value=value, by=by, reason=reason)
    return stored


async def set_site_banned(
    store: Store,
    security: Security,
    config: CentralConfig,
    *,
    site: str,
    banned: bool,
    reason: str,
    by: str,
    now: float,
) -> None:
    """A banned site gets no job and its queues report no demand (blocked)."""
    if config.site(site) is None:
        raise NotFoundError(f"site {site!r} is not configured")
    ban = BanRecord(name=site, banned=banned, reason=reason, updated=now)
    await store.set_ban("site", ban)
    security.bans.set_site(ban)
    log.info("security.site_ban", site=site, banned=banned, by=by, reason=reason)


async def set_user_banned(
    store: Store,
    security: Security,
    matcher: Matcher,
    *,
    user: str,
    banned: bool,
    reason: str,
    by: str,
    now: float,
) -> None:
    """A banned user's calls are refused and their waiting jobs are not given to pilots."""
    if not user:
        raise InvalidArgumentError("the user to ban is empty")
    ban = BanRecord(name=user, banned=banned, reason=reason, updated=now)
    await store.set_ban("user", ban)
    security.bans.set_user(ban)
    matcher.set_banned_owners(security.bans.banned_users())
    log.info("security.user_ban", user=user, banned=banned, by=by, reason=reason)


async def drain_pilots(
    store: Store, sessions: SessionRegistry, *, pilot_ids: Sequence[str], site: str
) -> list[str]:
    """Tell pilots (by id, or every running pilot of a site) to take no new job."""
    if not pilot_ids and not site:
        raise InvalidArgumentError("name the pilots or the site to drain")
    targets = list(dict.fromkeys(pilot_ids))
    if site:
        running = await store.list_pilots(PilotFilter(site=site, states=(PilotState.RUNNING,)))
        targets += [p.pilot_id for p in running if p.pilot_id not in targets]
    drained = [
        pilot_id
        for pilot_id in targets
        if sessions.send(pilot_id, Command(CommandKind.DRAIN, reason=DRAIN_REASON))
    ]
    log.info("pilots.drained", site=site, asked=len(targets), drained=len(drained))
    return drained
