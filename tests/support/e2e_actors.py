"""The processes of an end-to-end grid besides central: site directors and hand-started pilots.

Both run as real subprocesses (`python -m sitedirectors`, `python -m pilot`), each in its own
session so a test can end one the way a batch system would (SIGKILL to the process group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import kill_group

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 15.0


def subprocess_env(root: Path) -> dict[str, str]:
    """The environment of every process of the grid: this checkout on PYTHONPATH and nothing
    read from the developer's own client settings (the user's CLI adds its CA and token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    env.pop("COLUMNS", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env["XDG_CONFIG_HOME"] = str(root / "xdg")
    return env


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class DirectorProcess:
    """`python -m sitedirectors --config FILE` with the local backend."""

    name: str
    work_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def pilots_dir(self) -> Path:
        return self.work_dir / "pilots"

    def pilot_ids(self) -> list[str]:
        if not self.pilots_dir.is_dir():
            return []
        return sorted(p.name for p in self.pilots_dir.iterdir() if p.is_dir())

    def pilot_log(self, pilot_id: str) -> Path:
        return self.pilots_dir / pilot_id / "pilot.log"

    def pilot_group(self, pilot_id: str) -> int:
        """The process group of a pilot: the launcher's PID (see sitedirectors/local.py)."""
        data = json.loads((self.pilots_dir / pilot_id / "process.json").read_text())
        return int(data["pid"])

    def kill_pilot(self, pilot_id: str) -> None:
        kill_group(self.pilot_group(pilot_id))

    def stop(self) -> int | None:
        """SIGTERM (the director ends after its cycle; pilots keep running), SIGKILL if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(STOP_TIMEOUT)

    def describe(self) -> str:
        parts = [f"--- director {self.name} ---\n{tail(self.log_path)}"]
        for pilot_id in self.pilot_ids():
            parts.append(f"--- pilot {pilot_id} ---\n{tail(self.pilot_log(pilot_id))}")
        return "\n".join(parts)


@dataclass
class PilotProcess:
    """A pilot started by hand (`python -m pilot`), in its own session."""

    name: str
    work_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill_group(self) -> None:
        """SIGKILL the pilot's whole process group, as a batch system ends a slot. Its
        wrappers run in sessions of their own and must notice by themselves."""
        kill_group(self.proc.pid)
        self.proc.wait(STOP_TIMEOUT)

    def describe(self) -> str:
        return f"--- pilot {self.name} ---\n{tail(self.log_path)}"


def start_director(
    name: str, config_path: Path, work_dir: Path, env: dict[str, str]
) -> DirectorProcess:
    log_path = work_dir / "director.log"
    work_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sitedirectors", "--config", str(config_path)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return DirectorProcess(name, work_dir, log_path, proc)


def start_pilot(name: str, argv: list[str], work_dir: Path, env: dict[str, str]) -> PilotProcess:
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "pilot.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilot", *argv, "--work-dir", str(work_dir)],
            cwd=work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return PilotProcess(name, work_dir, log_path, proc)
