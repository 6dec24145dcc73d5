"""Central as its own process for benchmarks: a fresh PKI, a generated config, local tokens.

Tokens are signed with central's own key set (data_dir/keys), exactly as
`gridpilot admin token issue --data-dir` does on a central host, so the benchmark measures
central with TLS and token verification on, as in production.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from central.process import CentralProcess
from gridpilot.security.ca import init_ca, issue_server_cert
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0
ADMIN_GROUP = "belle_admin"
SE_NAME = "BENCH-SE"
# Large enough for one 100,000-job SubmitJobs call.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def site_name(index: int) -> str:
    return f"BENCH.S{index:03d}.org"


def ce_name(index: int) -> str:
    return f"ce{index:03d}.bench"


QUEUE = "q"


def group_name(index: int) -> str:
    return f"bench_g{index}"


def bench_config(work_dir: Path, *, sites: int, groups: int, heartbeat_period: float) -> str:
    """A central config with `sites` sites (one CE, one queue each) and `groups` user groups."""
    se_dir = work_dir / "se"
    se_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "central": {
            "listen": "127.0.0.1:0",
            "data_dir": str(work_dir / "central-data"),
            "heartbeat_period": heartbeat_period,
            # Generous: the benchmark measures matching, not stall detection.
            "stalled_after": 3600.0,
            "reschedule_stalled_after": 3600.0,
            "log_level": "WARNING",
        },
        "security": {"max_message_bytes": MAX_MESSAGE_BYTES},
        "sites": [
            {
                "name": site_name(i),
                "ces": [{"name": ce_name(i), "queues": [QUEUE]}],
                "default_output_se": SE_NAME,
            }
            for i in range(sites)
        ],
        "storage_elements": [{"name": SE_NAME, "site": site_name(0), "url": f"file://{se_dir}"}],
        "groups": [
            *({"name": group_name(g), "role": "user"} for g in range(groups)),
            {"name": ADMIN_GROUP, "role": "admin"},
        ],
    }
    return tomli_w.dumps(data)


class BenchCentral:
    """`python -m central serve` on 127.0.0.1 with TLS; a restart keeps the port and data."""

    def __init__(self, work_dir: Path, config_text: str) -> None:
        self.work_dir = work_dir
        pki = work_dir / "pki"
        self.ca_path = init_ca(pki / "ca", common_name="gridpilot bench CA")
        self.server_cert, self.server_key = issue_server_cert(
            pki / "ca", pki / "server", ["localhost", "127.0.0.1"]
        )
        self.config_path = work_dir / "central.toml"
        self.config_path.write_text(config_text)
        self._add_tls()
        self.port_file = work_dir / "central.port"
        self.log_path = work_dir / "central.log"
        self.data_dir = work_dir / "central-data"
        self.process = CentralProcess(
            self.config_path,
            self.port_file,
            self.log_path,
            start_timeout=START_TIMEOUT,
            stop_timeout=STOP_TIMEOUT,
        )
        self._issuer: TokenIssuer | None = None

    def _add_tls(self) -> None:
        config = tomllib.loads(self.config_path.read_text())
        security = config.setdefault("security", {})
        security["tls_cert"] = str(self.server_cert)
        security["tls_key"] = str(self.server_key)
        self.config_path.write_text(tomli_w.dumps(config))

    @property
    def target(self) -> str:
        return self.process.target

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 4000) -> str:
        return self.process.log_text()[-chars:]

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def mint(self, role: str, sub: str, *, group: str = "", **bindings: Any) -> str:
        """A token signed with central's own keys (central creates them at its first start)."""
        if self._issuer is None:
            self._issuer = TokenIssuer(
                KeySet.load_or_create(self.data_dir / "keys"),
                issuer="gridpilot",
                audience="gridpilot",
            )
        token, _ = self._issuer.issue(
            sub=sub, role=Role(role), group=group, lifetime=7200, **bindings
        )
        return token

    def user_token(self, user: str, group: str) -> str:
        return self.mint("user", user, group=group)

    def admin_token(self) -> str:
        return self.mint("admin", "bench-admin", group=ADMIN_GROUP)

    def registration_token(self, site_index: int) -> str:
        return self.mint(
            "pilot_registration",
            "bench-director",
            site=site_name(site_index),
            ce=ce_name(site_index),
            queue=QUEUE,
        )
