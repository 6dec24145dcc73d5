"""Banned sites and users: the configuration's bans, overridden by administrators' decisions.

An administrator's ban or unban (AdminService, stored durably) wins over the configuration's
`banned` flag, so a site banned in the file can be let back in without editing it.
"""

from __future__ import annotations

from central.config import CentralConfig
from central.store.records import BanRecord


class Bans:
    def __init__(self, config: CentralConfig) -> None:
        self._config_sites = {s.name for s in config.sites if s.banned}
        self._config_users = {u.name for u in config.users if u.banned}
        self._sites: dict[str, BanRecord] = {}
        self._users: dict[str, BanRecord] = {}

    def load(self, sites: list[BanRecord], users: list[BanRecord]) -> None:
        self._sites = {b.name: b for b in sites}
        self._users = {b.name: b for b in users}

    def set_site(self, ban: BanRecord) -> None:
        self._sites[ban.name] = ban

    def set_user(self, ban: BanRecord) -> None:
        self._users[ban.name] = ban

    def site_banned(self, site: str) -> bool:
        decided = self._sites.get(site)
        return decided.banned if decided is not None else site in self._config_sites

    def user_banned(self, user: str) -> bool:
        decided = self._users.get(user)
        return decided.banned if decided is not None else user in self._config_users

    def banned_users(self) -> frozenset[str]:
        candidates = self._config_users | set(self._users)
        return frozenset(u for u in candidates if self.user_banned(u))
