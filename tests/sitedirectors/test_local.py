"""The local backend: the conformance suite on real processes, plus its own parsers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from central.models.pilot_states import PilotState
from sitedirectors.base import (
    Backend,
    BackendConfigError,
    BackendContext,
    PilotLaunch,
    SubmitOutcome,
    SubmitRequest,
)
from sitedirectors.local import (
    LocalBackend,
    create_local_backend,
    native_state,
    parse_exit_code,
    parse_reference,
    to_status,
)
from sitedirectors.remote import tail_file
from tests.sitedirectors.conformance import QUEUE, BackendConformance, is_final, wait_status


def python_launch(pilot_id: str, code: str) -> PilotLaunch:
    return PilotLaunch(pilot_id, (sys.executable, "-c", code), environment={"GRIDPILOT_TEST": "1"})


@pytest.fixture
def pilots_dir(tmp_path: Path) -> Path:
    return tmp_path / "pilots"


@pytest.fixture
def backend(pilots_dir: Path) -> Iterator[LocalBackend]:
    instance = LocalBackend(pilots_dir, kill_grace=1.0)
    yield instance
    _kill_leftovers(pilots_dir)
    instance.close()


def _kill_leftovers(pilots_dir: Path) -> None:
    # Never leave test processes behind, whatever a test did.
    if not pilots_dir.is_dir():
        return
    for pilot_dir in pilots_dir.iterdir():
        process_file = pilot_dir / "process.json"
        if process_file.exists():
            pid = int(json.loads(process_file.read_text())["pid"])
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


class TestLocalConformance(BackendConformance):
    @pytest.fixture
    def restarted_backend(self, pilots_dir: Path) -> Callable[[], Backend]:
        return lambda: LocalBackend(pilots_dir, kill_grace=1.0)

    @pytest.fixture
    def launch_factory(self) -> Callable[[str, str], PilotLaunch]:
        return python_launch

    def vanish(self, reference: str) -> None:
        pid, _ = parse_reference(reference)
        os.killpg(pid, signal.SIGKILL)


# ---- pure parsers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("123:abc", (123, "abc")), ("7:a1b2-c3_d.e", (7, "a1b2-c3_d.e"))],
)
def test_parse_reference(reference: str, expected: tuple[int, str]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize("reference", ["", "123", "abc:def", "12:", "12:../etc", "12:a/b", "-1:x"])
def test_parse_reference_rejects(reference: str) -> None:
    with pytest.raises(ValueError, match="not a local backend reference"):
        parse_reference(reference)


@pytest.mark.parametrize(
    ("text", "expected"), [("0\n", 0), ("3", 3), (" 137 \n", 137), ("", None), ("x\n", None)]
)
def test_parse_exit_code(text: str, expected: int | None) -> None:
    assert parse_exit_code(text) == expected


@pytest.mark.parametrize(
    ("alive", "exit_code", "cancelled", "native", "state"),
    [
        (True, None, False, "running", PilotState.RUNNING),
        (True, None, True, "running", PilotState.RUNNING),
        (False, 0, False, "done", PilotState.DONE),
        (True, 0, False, "done", PilotState.DONE),  # launcher about to exit
        (False, 3, False, "failed", PilotState.FAILED),
        (False, 143, True, "failed", PilotState.FAILED),
        (False, None, True, "cancelled", PilotState.ABORTED),
        (False, None, False, "vanished", PilotState.ABORTED),
    ],
)
def test_native_state_table(
    alive: bool, exit_code: int | None, cancelled: bool, native: str, state: PilotState
) -> None:
    assert native_state(alive, exit_code, cancelled) == native
    assert to_status(native, exit_code).state is state


def test_tail_file(tmp_path: Path) -> None:
    path = tmp_path / "log"
    assert tail_file(path, 10) == ""
    path.write_text("first line\nsecond\nthird\n")
    assert tail_file(path, 1000) == "first line\nsecond\nthird\n"
    # The cut line is dropped so the tail starts on a line boundary.
    assert tail_file(path, 10) == "third\n"
    path.write_text("x" * 50 + "\n")
    assert tail_file(path, 10) == "x" * 9 + "\n"


# ---- local specifics -------------------------------------------------------------------------


def test_pilot_gets_work_dir_environment_and_own_session(backend: LocalBackend) -> None:
    code = (
        "import os, sys, json; "
        "print(json.dumps({'argv': sys.argv[1:], 'env': os.environ.get('GRIDPILOT_TEST'), "
        "'sid': os.getsid(0), 'pgid': os.getpgid(0), 'cwd': os.getcwd(), "
        "'path': os.environ.get('PYTHONPATH', '')}))"
    )
    pilot_id = uuid.uuid4().hex
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch(pilot_id, code),)))
    assert result.outcome is SubmitOutcome.OK
    wait_status(backend, result.reference, is_final)
    info = json.loads(backend.fetch_output(result.reference))
    pid, _ = parse_reference(result.reference)
    work = backend.pilots_dir / pilot_id / "work"
    assert info["argv"] == ["--work-dir", str(work)]
    assert work.is_dir()
    assert info["env"] == "1"
    # The launcher leads a new session and process group: cancel can signal all of it.
    assert info["sid"] == pid
    assert info["pgid"] == pid
    assert info["cwd"] == str(backend.pilots_dir / pilot_id)
    assert str(Path(__file__).resolve().parents[2]) in info["path"].split(os.pathsep)


def test_registration_token_travels_in_a_private_file(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Never in argv (any local user can read /proc/<pid>/cmdline), never world-readable."""
    token = "registration-token-" + uuid.uuid4().hex
    code = (
        "import json, os, sys; a = sys.argv[1:]; path = a[a.index('--token-file') + 1]; "
        "print(json.dumps({'argv': a, 'mode': os.stat(path).st_mode & 0o777, "
        "'token': open(path).read().strip(), "
        "'cmdline': open('/proc/self/cmdline', 'rb').read().decode()}))"
    )
    launch = PilotLaunch(
        uuid.uuid4().hex,
        (sys.executable, "-c", code),
        registration_token=token,
        ca=tmp_path / "ca.pem",
    )
    [result] = backend.submit(SubmitRequest(QUEUE, (launch,)))
    assert result.outcome is SubmitOutcome.OK, result.error
    wait_status(backend, result.reference, is_final)
    info = json.loads(backend.fetch_output(result.reference))
    token_file = backend.pilots_dir / launch.pilot_id / "registration.token"
    work = backend.pilots_dir / launch.pilot_id / "work"
    assert info["argv"] == [
        "--token-file", str(token_file),
        "--ca", str(tmp_path / "ca.pem"),
        "--work-dir", str(work),
    ]  # fmt: skip
    assert info["mode"] == 0o600
    assert info["token"] == token
    assert token not in info["cmdline"]
    assert token not in repr(launch)


def test_arguments_are_not_shell_split(backend: LocalBackend) -> None:
    tricky = "a b; echo injected > $HOME/x 'quoted' $(id)"
    launch = PilotLaunch(
        uuid.uuid4().hex,
        (sys.executable, "-c", "import sys; print(repr(sys.argv[1]))"),
        arguments=(tricky,),
    )
    [result] = backend.submit(SubmitRequest(QUEUE, (launch,)))
    wait_status(backend, result.reference, is_final)
    assert backend.fetch_output(result.reference).strip() == repr(tricky)


def test_existing_pilot_dir_is_a_permanent_failure(backend: LocalBackend) -> None:
    pilot_id = uuid.uuid4().hex
    (backend.pilots_dir / pilot_id).mkdir(parents=True)
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch(pilot_id, "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "exists" in result.error


def test_unsafe_pilot_id_refused(backend: LocalBackend) -> None:
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("../escape", "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert not (backend.pilots_dir.parent / "escape").exists()


def test_missing_shell_is_a_permanent_failure(pilots_dir: Path) -> None:
    backend = LocalBackend(pilots_dir, shell=str(pilots_dir / "no-such-shell"))
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch(uuid.uuid4().hex, "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "no-such-shell" in result.error
    assert not any(pilots_dir.iterdir())  # nothing left of a pilot that never started


def test_cancel_kills_a_pilot_ignoring_sigterm(pilots_dir: Path) -> None:
    backend = LocalBackend(pilots_dir, kill_grace=0.5)
    code = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open('child.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    )
    pilot_id = uuid.uuid4().hex
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch(pilot_id, code),)))
    pid_file = pilots_dir / pilot_id / "child.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "pilot never started"
        time.sleep(0.05)
    child = psutil.Process(int(pid_file.read_text()))
    started = time.monotonic()
    backend.cancel([result.reference])
    assert time.monotonic() - started >= 0.4  # waited the grace before SIGKILL
    child.wait(timeout=5)  # raises if still alive
    assert backend.status([result.reference])[result.reference].state is PilotState.ABORTED


def test_recycled_pid_is_not_mistaken_for_the_pilot(backend: LocalBackend) -> None:
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch(uuid.uuid4().hex, "pass"),)))
    wait_status(backend, result.reference, is_final)
    _pid, pilot_id = parse_reference(result.reference)
    # Point the reference at a live process that is not ours (this test process).
    fake_ref = f"{os.getpid()}:{pilot_id}"
    (backend.pilots_dir / pilot_id / "exit_code").unlink()
    status = backend.status([fake_ref])[fake_ref]
    assert status.state is PilotState.ABORTED
    assert status.native == "vanished"


def test_factory_options(tmp_path: Path) -> None:
    backend = create_local_backend(
        BackendContext("q", tmp_path, {"kill_grace": 2.5, "pilots_dir": str(tmp_path / "p")})
    )
    assert backend.kill_grace == 2.5
    assert backend.pilots_dir == tmp_path / "p"
    default = create_local_backend(BackendContext("q", tmp_path, {}))
    assert default.pilots_dir == tmp_path / "pilots"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus": 1}, "bogus"),
        ({"kill_grace": "soon"}, "kill_grace"),
        ({"kill_grace": -1}, "kill_grace"),
    ],
)
def test_factory_rejects_bad_options(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BackendConfigError, match=message):
        create_local_backend(BackendContext("q", tmp_path, options))
