"""Who is calling. Read from request metadata today; signed tokens replace that at the same seam."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

# Members of these groups may act on every user's jobs.
ADMIN_GROUPS: frozenset[str] = frozenset({"admin", "belle_admin"})

DEFAULT_USER = "anonymous"
DEFAULT_GROUP = "belle"


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    group: str

    @property
    def is_admin(self) -> bool:
        return self.group in ADMIN_GROUPS

    def may_manage(self, owner: str) -> bool:
        return self.is_admin or self.user == owner


ANONYMOUS = Caller(DEFAULT_USER, DEFAULT_GROUP)

# Set by the RPC interceptor for the duration of one call.
current_caller: ContextVar[Caller] = ContextVar("current_caller", default=ANONYMOUS)
