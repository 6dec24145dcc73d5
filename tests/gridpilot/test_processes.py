"""Starting a program as another account (setpriv in the child) and stopping children."""

from __future__ import annotations

import subprocess
import sys

from gridpilot.processes import as_user, stop_child


def test_as_user_switches_uid_gid_and_clears_groups() -> None:
    # Debian's `daemon` account: uid 1, its own group gid 1.
    done = subprocess.run(
        as_user(["sh", "-c", "id -u; id -g; id -G"], "daemon"),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.split() == ["1", "1", "1"]


def test_stop_child_terminates_then_reaps() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_child(proc, 10) == -15
    assert stop_child(proc, 10) == -15  # already reaped: only its code
