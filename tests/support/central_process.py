"""Run a real central as a subprocess for integration tests.

    from tests.support.central_process import running_central

    def test_something(tmp_path: Path) -> None:
        with running_central(tmp_path, {"central": {"stalled_after": 2.0}}) as central:
            channel = open_sync_channel(central.target)
            ...

The default configuration (see `default_config`) has one site `SITE` with CE `CE` / queue
`QUEUE`, a local SE `LOCAL_SE` (its default output SE) and a failover SE `FAILOVER_SE`, both
file:// directories under tmp_path/se/ (`handle.se_dirs`), and short periods for tests
(heartbeat 0.5 s, stalled after 5 s). `config_overrides` are merged into it: tables merge key
by key, any other value (lists included) replaces the default.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support import toml_writer

REPO_ROOT = Path(__file__).resolve().parents[2]

SITE = "GP.LOCAL.test"
CE = "localhost"
QUEUE = "default"
LOCAL_SE = "LOCAL-SE"
FAILOVER_SE = "FAILOVER-SE"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def default_config(tmp_path: Path) -> dict[str, Any]:
    se_root = tmp_path / "se"
    return {
        "central": {
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp_path / "central-data"),
            "heartbeat_period": 0.5,
            "stalled_after": 5.0,
            "reschedule_stalled_after": 5.0,
            "stalled_check_period": 0.5,
            "failover_period": 0.5,
            "log_level": "INFO",
        },
        "sites": [
            {
                "name": SITE,
                "ces": [{"name": CE, "queues": [QUEUE]}],
                "local_ses": [LOCAL_SE],
                "default_output_se": LOCAL_SE,
            }
        ],
        "storage_elements": [
            {"name": LOCAL_SE, "site": SITE, "url": f"file://{se_root / 'local'}"},
            {"name": FAILOVER_SE, "site": SITE, "url": f"file://{se_root / 'failover'}"},
        ],
        "failover": {"ses": [FAILOVER_SE]},
    }


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge recursively; every other value replaces the base's."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class CentralStartError(RuntimeError):
    """Central did not come up; the message holds the end of its log."""


class CentralHandle:
    """A central subprocess. `target` is "127.0.0.1:PORT"; a restart keeps the port."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.config_path = tmp_path / "central.toml"
        self.port_file = tmp_path / "central.port"
        self.log_path = tmp_path / "central.log"
        self.data_dir = Path(config["central"]["data_dir"])
        self.se_dirs: dict[str, Path] = {
            se["name"]: Path(se["url"].removeprefix("file://"))
            for se in config.get("storage_elements", [])
            if se["url"].startswith("file://")
        }
        self.target = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("central is not running")
        return self._proc.pid

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        if self.running:
            raise RuntimeError("central is already running")
        for path in self.se_dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(toml_writer.dumps(self.config))
        self.port_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "central",
            "serve",
            "--config",
            str(self.config_path),
            "--port-file",
            str(self.port_file),
            "--grace",
            "1",
        ]
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
        self._wait_for_port()

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.port_file.exists():
                text = self.port_file.read_text().strip()
                host, _, port = text.rpartition(":")
                self._port = int(port)
                self.target = f"{host}:{port}"
                return
            if self._proc is not None and self._proc.poll() is not None:
                raise CentralStartError(
                    f"central exited with {self._proc.returncode} during start:\n"
                    + self.log_text()[-4000:]
                )
            time.sleep(0.05)
        self.kill()
        raise CentralStartError(
            f"central wrote no port file within {START_TIMEOUT} s:\n" + self.log_text()[-4000:]
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(STOP_TIMEOUT)

    def kill(self) -> int | None:
        """SIGKILL: a crash, no graceful stop."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait(STOP_TIMEOUT)

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or kill, with crash=True) and start again on the same port and data."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()


@contextlib.contextmanager
def running_central(
    tmp_path: Path, config_overrides: dict[str, Any] | None = None
) -> Iterator[CentralHandle]:
    handle = CentralHandle(tmp_path, merge(default_config(tmp_path), config_overrides or {}))
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
