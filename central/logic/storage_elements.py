"""The storage elements as central sees them now, in memory: what the configuration and the
admins allow, what the probe agent last found (health, occupancy), and what each site has
learned about reading from each SE (costs).

Matching reads the failover list and the output SE's state on every job, so the table is
cached here and refreshed on every change made through central (admin switch, probe, learned
cost). An SE is *readable* when an admin allows reads and its probes pass; *writable* when an
admin allows writes, its probes pass and it is not fuller than `storage.full_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from central.config import CentralConfig, StorageSection
from central.logic.errors import InvalidArgumentError, NotFoundError
from central.store.interface import Store
from central.store.records import SECostRecord, SEHealthRecord, StorageElementRecord
from gridpilot.logs import get_logger

log = get_logger(__name__)


class StorageElements:
    def __init__(
        self,
        records: Iterable[StorageElementRecord] = (),
        *,
        settings: StorageSection | None = None,
        health: Iterable[SEHealthRecord] = (),
        costs: Iterable[SECostRecord] = (),
    ) -> None:
        self._by_name: dict[str, StorageElementRecord] = {se.name: se for se in records}
        self.settings = settings or StorageSection()
        self._health: dict[str, SEHealthRecord] = {h.se: h for h in health}
        self._costs: dict[tuple[str, str], SECostRecord] = {(c.site, c.se): c for c in costs}

    async def sync_from_config(self, store: Store, config: CentralConfig) -> None:
        await store.upsert_storage_elements(
            [
                StorageElementRecord(
                    name=se.name,
                    site=se.site,
                    url=se.url,
                    read_allowed=se.read,
                    write_allowed=se.write,
                )
                for se in config.storage_elements
            ]
        )
        self.settings = config.storage
        await self.reload(store)

    async def reload(self, store: Store) -> None:
        self._by_name = {se.name: se for se in await store.list_storage_elements()}
        self._health = {h.se: h for h in await store.list_se_health()}
        self._costs = {(c.site, c.se): c for c in await store.list_se_costs()}

    # ---- the table ----

    def get(self, name: str) -> StorageElementRecord | None:
        return self._by_name.get(name)

    def all(self) -> list[StorageElementRecord]:
        return sorted(self._by_name.values(), key=lambda se: se.name)

    def require(self, name: str) -> StorageElementRecord:
        se = self._by_name.get(name)
        if se is None:
            raise InvalidArgumentError(f"unknown storage element {name!r}")
        return se

    async def set_status(self, store: Store, name: str, read: bool, write: bool) -> None:
        if not await store.set_storage_element_status(name, read, write):
            raise NotFoundError(f"storage element {name!r} does not exist")
        await self.reload(store)
        log.info("se.status", se=name, read=read, write=write)

    # ---- health and occupancy ----

    def health(self, name: str) -> SEHealthRecord | None:
        return self._health.get(name)

    def set_health(self, health: SEHealthRecord) -> None:
        self._health[health.se] = health

    def used_fraction(self, name: str) -> float | None:
        """The used share of the SE's space as it last reported it (None: not reported)."""
        h = self._health.get(name)
        if h is None or h.total_bytes <= 0 or h.free_bytes < 0:
            return None
        return max(h.total_bytes - h.free_bytes, 0) / h.total_bytes

    def _unhealthy(self, name: str) -> str | None:
        h = self._health.get(name)
        if h is None or h.available:
            return None
        return f"unavailable after {h.consecutive_failures} failed probes ({h.last_error})"

    def read_refusal(self, name: str) -> str | None:
        """Why the SE may not be read now; None when it may."""
        se = self._by_name.get(name)
        if se is None:
            return "unknown storage element"
        if not se.read_allowed:
            return "reads disabled by an administrator"
        return self._unhealthy(name)

    def write_refusal(self, name: str) -> str | None:
        """Why the SE may not take new files now; None when it may."""
        se = self._by_name.get(name)
        if se is None:
            return "unknown storage element"
        if not se.write_allowed:
            return "writes disabled by an administrator"
        if unhealthy := self._unhealthy(name):
            return unhealthy
        used = self.used_fraction(name)
        if used is not None and used > self.settings.full_threshold:
            return f"full: {used:.0%} used (no new writes above {self.settings.full_threshold:.0%})"
        return None

    def writable(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if self.write_refusal(n) is None]

    # ---- learned costs ----

    def learned_cost(self, site: str, se: str) -> SECostRecord | None:
        return self._costs.get((site, se))

    def set_costs(self, costs: Iterable[SECostRecord]) -> None:
        for cost in costs:
            self._costs[(cost.site, cost.se)] = cost
