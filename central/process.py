"""Central as a child process: the port file it writes once serving, and a launcher for tools
(the demo, the benchmark) and tests that run `python -m central serve` and stop it by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gridpilot.processes import stop_child

# Lets a child started from a source checkout import the same code as its parent.
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


class CentralStartError(RuntimeError):
    """Central exited or wrote no port file in time; the message ends with its log."""


def write_port_file(path: Path, host: str, port: int, login: str | None = None) -> None:
    """Write "host:port" (and "login host:port") atomically: readers see nothing or all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{host}:{port}\n")
            if login:
                f.write(f"login {login}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_port_file(path: Path) -> tuple[str, str] | None:
    """(main "host:port", login "host:port" or ""), or None while central has not written it."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines:
        return None
    login = next((line.split()[1] for line in lines[1:] if line.startswith("login ")), "")
    return lines[0].strip(), login


class CentralProcess:
    """`python -m central serve` in the background; a restart keeps the port and the data."""

    def __init__(
        self,
        config_path: Path,
        port_file: Path,
        log_path: Path,
        *,
        insecure: bool = False,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.config_path = config_path
        self.port_file = port_file
        self.log_path = log_path
        self.insecure = insecure
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.target = ""
        self.login_target = ""
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("central is not running")
        return self._proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start and wait until central serves (its port file is written)."""
        if self.running:
            raise RuntimeError("central is already running")
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "central", "serve", "--config", str(self.config_path)]
        cmd += ["--port-file", str(self.port_file), "--grace", "1"]
        if self.insecure:
            cmd.append("--insecure")
        if self.port:
            cmd += ["--listen", f"127.0.0.1:{self.port}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=_SOURCE_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            addresses = read_port_file(self.port_file)
            if addresses is not None:
                self.target, self.login_target = addresses
                self.port = int(self.target.rpartition(":")[2])
                return
            if self._proc.poll() is not None:
                raise CentralStartError(
                    f"central exited with {self._proc.returncode} during start:\n"
                    + self.log_text()[-4000:]
                )
            time.sleep(0.05)
        self.kill()
        raise CentralStartError(
            f"central wrote no port file within {self.start_timeout} s:\n" + self.log_text()[-4000:]
        )

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after the stop timeout); returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        return stop_child(proc, self.stop_timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash, no graceful stop."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait(self.stop_timeout)

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or kill, with crash=True) and start again on the same port and data."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()
