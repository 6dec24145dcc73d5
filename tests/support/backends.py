"""Real backends for the tests (sshd, SLURM, ...): installed when missing, never faked.

The test setup installs a missing backend's Debian packages itself (`ensure_debian_packages`,
when running as root with apt-get, as on the project's machines and in CI), so the README's
test command alone gets the whole suite running. If a backend still cannot be had, outside CI
the test skips with what to install; under CI=true it fails, because a silent skip would hide
that CI did not run it. GRIDPILOT_TEST_NO_APT=1 stops the tests from touching the system's
packages (then install them by hand: the `.ci/run` list).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

# apt-get takes minutes on a cold cache: one generous bound, not a hang.
_APT_TIMEOUT = 900
_APT_LOCK = Path("/tmp/gridpilot-tests-apt.lock")
# Whether this process already ran `apt-get update` (once is enough).
_apt_state = {"updated": False}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_backend(available: bool, what: str, install_hint: str) -> None:
    """Skip (outside CI) or fail (in CI) unless `available`."""
    if available:
        return
    message = f"{what} is not available here ({install_hint})"
    if in_ci():
        pytest.fail(f"CI must provide it: {message}", pytrace=False)
    pytest.skip(message)


def require_debian_backend(
    what: str, packages: Sequence[str], programs: Sequence[str], available: Callable[[], bool]
) -> None:
    """`require_backend` for a backend from Debian's packages: installs them first when
    `available()` says no (see `ensure_debian_packages`)."""
    hint = f"apt-get install -y {' '.join(packages)}"
    if not available():
        problem = ensure_debian_packages(packages, programs)
        if problem:
            hint = f"{hint}; {problem}"
    require_backend(available(), what, hint)


def _missing(programs: Sequence[str]) -> list[str]:
    return [p for p in programs if shutil.which(p) is None and not Path(p).exists()]


def ensure_debian_packages(packages: Sequence[str], programs: Sequence[str]) -> str:
    """Install `packages` unless every one of `programs` (names on PATH or absolute paths) is
    there already. Returns "" when all programs are present afterwards, else why not."""
    if not _missing(programs):
        return ""
    if os.environ.get("GRIDPILOT_TEST_NO_APT") == "1":
        return f"missing {', '.join(_missing(programs))}; GRIDPILOT_TEST_NO_APT=1 forbids apt"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"missing {', '.join(_missing(programs))}; installing needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Test processes (pytest-xdist workers, parallel sessions) must not run apt at once.
    with _APT_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _missing(programs):
            return ""
        commands = [["apt-get", "install", "-y", "-q", *packages]]
        if not _apt_state["updated"]:
            commands.insert(0, ["apt-get", "update", "-q"])
        for command in commands:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_APT_TIMEOUT, env=env, check=False
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                return f"{' '.join(command[:2])} failed: {' '.join(tail)}"
        _apt_state["updated"] = True
    still = _missing(programs)
    return f"still missing after apt-get install: {', '.join(still)}" if still else ""
