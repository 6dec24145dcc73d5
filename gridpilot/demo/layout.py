"""Where the demo's files live and how its central and site directors are configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridpilot.demo.security import DemoPki

SITES = {
    "LCG.KEK.jp": "KEK-SE",
    "LCG.DESY.de": "DESY-SE",
}
FAILOVER_SITE = "LCG.CERN.ch"
FAILOVER_SE = "CERN-FAILOVER"
# The SE whose outage forces output failover during the demo.
OUTAGE_SE = "DESY-SE"
DATASET_LPN = "/belle/MC/demo/mdst/sub00"


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @classmethod
    def create(cls, root: Path) -> DemoLayout:
        layout = cls(root)
        for path in (layout.logs, layout.releases, layout.central_data):
            path.mkdir(parents=True, exist_ok=True)
        return layout

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def central_data(self) -> Path:
        return self.root / "central"

    @property
    def se_root(self) -> Path:
        return self.root / "se"


SE_NAMES = [*SITES.values(), FAILOVER_SE]


def short_name(site: str) -> str:
    return site.split(".")[1].lower()


def ce_name(site: str) -> str:
    return f"local.{short_name(site)}"


def central_config(layout: DemoLayout, pki: DemoPki, se_urls: dict[str, str]) -> dict[str, Any]:
    return {
        "central": {
            "listen": "127.0.0.1:0",
            "data_dir": str(layout.central_data),
            "heartbeat_period": 2.0,
            "stalled_after": 30.0,
            "reschedule_stalled_after": 15.0,
            "stalled_check_period": 2.0,
            "failover_period": 2.0,
        },
        # SE probes every few seconds: the outage shows in `gridpilot admin se`.
        "storage": {"probe_period": 3.0, "probe_failures": 2, "probe_bytes": 4096},
        "sites": [
            *(
                {
                    "name": site,
                    "ces": [{"name": ce_name(site), "queues": ["demo"]}],
                    "local_ses": [se],
                    "default_output_se": se,
                }
                for site, se in SITES.items()
            ),
            {"name": FAILOVER_SITE, "local_ses": [FAILOVER_SE]},
        ],
        "storage_elements": [
            {
                "name": name,
                "site": next((s for s, se in SITES.items() if se == name), FAILOVER_SITE),
                "url": se_urls[name],
            }
            for name in SE_NAMES
        ],
        "distances": {"LCG.KEK.jp": {"DESY-SE": 10}, "LCG.DESY.de": {"KEK-SE": 10}},
        "failover": {"ses": [FAILOVER_SE]},
        **pki.central_config(),
    }


def director_config(
    layout: DemoLayout,
    site: str,
    *,
    name: str,
    central: str,
    ca: Path,
    token_file: Path,
    software_setup: str,
) -> dict[str, Any]:
    return {
        "director": {
            "name": name,
            "central": central,
            "cycle_period": 2.0,
            "work_dir": str(layout.root / "pilots" / short_name(site)),
            "ca": str(ca),
            "token_file": str(token_file),
        },
        "queues": [
            {
                "name": "demo",
                "site": site,
                "ce": ce_name(site),
                "backend": "local",
                "max_waiting": 2,
                "max_total": 3,
                "max_per_cycle": 2,
                "slots": 1,
                "cpu_time": 86400,
                "memory_mb": 2048,
                "pilot": {"idle_timeout": 8.0, "software_setup": software_setup},
            }
        ],
    }
