"""Central as its own process for benchmarks: a fresh PKI, a generated config, local tokens.

Tokens are signed with central's own key set (data_dir/keys), exactly as
`gridpilot admin token issue --data-dir` does on a central host, so the benchmark measures
central with TLS and token verification on, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

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


class CentralStartError(RuntimeError):
    """Central did not come up; the message holds the end of its log."""


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
        self.target = ""
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._issuer: TokenIssuer | None = None

    def _add_tls(self) -> None:
        config = tomllib.loads(self.config_path.read_text())
        security = config.setdefault("security", {})
        security["tls_cert"] = str(self.server_cert)
        security["tls_key"] = str(self.server_key)
        self.config_path.write_text(tomli_w.dumps(config))

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("central is not running")
        return self._proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("central is already running")
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "central", "serve", "--config", str(self.config_path)]
        cmd += ["--port-file", str(self.port_file), "--grace", "1"]
        if self._port:
            cmd += ["--listen", f"127.0.0.1:{self._port}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.port_file.exists() and self.port_file.read_text().strip():
                host, _, port = self.port_file.read_text().splitlines()[0].strip().rpartition(":")
                self._port = int(port)
                self.target = f"{host}:{port}"
                return
            if self._proc.poll() is not None:
                raise CentralStartError(
                    f"central exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        self.kill()
        raise CentralStartError(f"central wrote no port file in {START_TIMEOUT} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
                return
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(STOP_TIMEOUT)

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
