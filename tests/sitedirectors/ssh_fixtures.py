"""Fixtures of the ssh backend's tests: one real sshd per test session, a private remote work
directory per test. A test module loads them as a plugin (so they are not imported names):

"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd import SshServer, running_sshd


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def pilot_pids(pilots_dir: Path) -> list[int]:
    """The launchers' PIDs recorded in `<pilot dir>/process` (each leads its process group)."""
    pids: list[int] = []
    for process_file in pilots_dir.glob("*/process"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int(process_file.read_text().split()[0]))
    return pids


def kill_pilots(pilots_dir: Path) -> None:
    """Never leave a test's pilots behind, whatever the test did."""
    for pid in pilot_pids(pilots_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def remote_work_dir(sshd_server: SshServer) -> Iterator[Path]:
    """A work directory of its own on the "remote" host (the test account's home here),
    removed with every pilot started in it."""
    path = sshd_server.home / f"gp-test-{uuid.uuid4().hex[:12]}"
    yield path
    kill_pilots(path / "pilots")
    shutil.rmtree(path, ignore_errors=True)
