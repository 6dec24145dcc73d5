"""The ssh backend's pure parts: references, what the remote scripts print (captured from real
runs against sshd), the native state table, remote command quoting and option checks."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendConfigError
from sitedirectors.ssh import (
    NATIVE_STATES,
    cleanup_age_minutes,
    convert_options,
    native_state,
    parse_reference,
    to_status,
)
from sitedirectors.ssh_scripts import (
    RemotePilot,
    marked_lines,
    parse_exit_code,
    parse_launch_output,
    parse_status_output,
)
from sitedirectors.ssh_session import remote_command

# Captured from the real scripts on Debian 12 (dash) through sshd: pilots running, done,
# exited 3, cancelled by the director, SIGKILLed behind its back, and one never started.
CAPTURED_STATUS = (
    "gridpilot-status p-running present 1 0 -\n"
    "gridpilot-status p-done present 0 0 0\n"
    "gridpilot-status p-failed present 0 0 3\n"
    "gridpilot-status p-cancelled present 0 1 -\n"
    "gridpilot-status p-vanished present 0 0 -\n"
    "gridpilot-status p-missing missing\n"
)
CAPTURED_LAUNCH = "gridpilot-pid 6395 1077820\n"
CAPTURED_CANCEL = "gridpilot-cancelled p-cancelled 6383\n"
CAPTURED_CLEANUP = "gridpilot-removed p-running\ngridpilot-removed p-done\n"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("127.0.0.1:123:abc", ("127.0.0.1", 123, "abc")),
        ("login.example.org:7:a1b2-c3_d.e", ("login.example.org", 7, "a1b2-c3_d.e")),
        ("::1:42:p1", ("::1", 42, "p1")),
    ],
)
def test_parse_reference(reference: str, expected: tuple[str, int, str]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize(
    "reference", ["", "p1", "123:p1", "host:x:p1", ":12:p1", "host:12:", "h:12:../x", "h:12:a/b"]
)
def test_parse_reference_rejects(reference: str) -> None:
    with pytest.raises(ValueError, match="not an ssh backend reference"):
        parse_reference(reference)


def test_parse_launch_output() -> None:
    assert parse_launch_output(CAPTURED_LAUNCH) == (6395, "1077820")
    # A login shell that talks first, and a launcher /proc could not see any more.
    assert parse_launch_output("Welcome!\ngridpilot-pid 77 \n") == (77, "")
    with pytest.raises(ValueError, match="no pilot PID"):
        parse_launch_output("sh: 1: cd: can't cd to /nowhere\n")


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("3", 3), ("137\n", 137), ("-", None), ("", None), ("x", None)]
)
def test_parse_exit_code(text: str, expected: int | None) -> None:
    assert parse_exit_code(text) == expected


def test_parse_status_output_of_a_real_run() -> None:
    found = parse_status_output("motd noise\n" + CAPTURED_STATUS + "gridpilot-status broken\n")
    assert found == {
        "p-running": RemotePilot(present=True, alive=True),
        "p-done": RemotePilot(present=True, exit_code=0),
        "p-failed": RemotePilot(present=True, exit_code=3),
        "p-cancelled": RemotePilot(present=True, cancelled=True),
        "p-vanished": RemotePilot(present=True),
        "p-missing": RemotePilot(present=False),
    }
    natives = {pilot_id: native_state(pilot) for pilot_id, pilot in found.items()}
    assert natives == {
        "p-running": "running",
        "p-done": "done",
        "p-failed": "failed",
        "p-cancelled": "cancelled",
        "p-vanished": "vanished",
        "p-missing": "unknown",
    }


@pytest.mark.parametrize(
    ("pilot", "native", "state"),
    [
        (RemotePilot(present=True, alive=True), "running", PilotState.RUNNING),
        (RemotePilot(present=True, alive=True, cancelled=True), "running", PilotState.RUNNING),
        (RemotePilot(present=True, exit_code=0), "done", PilotState.DONE),
        # The launcher wrote its exit code and is about to exit.
        (RemotePilot(present=True, alive=True, exit_code=0), "done", PilotState.DONE),
        (RemotePilot(present=True, exit_code=3), "failed", PilotState.FAILED),
        (RemotePilot(present=True, cancelled=True, exit_code=143), "failed", PilotState.FAILED),
        (RemotePilot(present=True, cancelled=True), "cancelled", PilotState.ABORTED),
        (RemotePilot(present=True), "vanished", PilotState.ABORTED),
        (RemotePilot(present=False), "unknown", PilotState.UNKNOWN),
    ],
)
def test_native_state_table(pilot: RemotePilot, native: str, state: PilotState) -> None:
    assert native_state(pilot) == native
    status = to_status(native, pilot, "/home/u/gridpilot/pilots/p")
    assert status.state is state
    assert NATIVE_STATES[native] is state
    assert status.exit_code == pilot.exit_code


def test_reasons_name_what_happened() -> None:
    assert "3" in to_status("failed", RemotePilot(True, exit_code=3), "d").reason
    assert "cancel" in to_status("cancelled", RemotePilot(True, cancelled=True), "d").reason
    assert "vanished" in to_status("vanished", RemotePilot(True), "d").reason
    assert "/x/p" in to_status("unknown", RemotePilot(False), "/x/p").reason


def test_marked_lines() -> None:
    assert marked_lines(CAPTURED_CANCEL, "gridpilot-cancelled") == [["p-cancelled", "6383"]]
    assert marked_lines(CAPTURED_CLEANUP, "gridpilot-removed") == [["p-running"], ["p-done"]]
    assert marked_lines(CAPTURED_CLEANUP, "gridpilot-kept") == []


def test_cleanup_age_minutes() -> None:
    assert cleanup_age_minutes(7) == 7 * 24 * 60
    assert cleanup_age_minutes(0.5) == 12 * 60
    assert cleanup_age_minutes(1e-9) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["echo", "plain"],
        ["printf", "%s\n", "a b", "$(id)", "`id`", "'q'", '"dq"', "x;y", "*", "\\", ""],
    ],
)
def test_remote_command_is_read_back_as_the_same_argv(argv: list[str]) -> None:
    command = remote_command(argv)
    assert shlex.split(command) == argv
    # What a POSIX shell (the remote login shell) makes of it.
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    if argv[0] == "printf":
        assert done.stdout == "".join(f"{a}\n" for a in argv[2:])


def test_remote_command_environment() -> None:
    command = remote_command(["sh", "-c", 'echo "$A"'], {"A": "x $HOME y"})
    assert command.startswith("env ")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert done.stdout == "x $HOME y\n"
    with pytest.raises(ValueError, match="environment variable"):
        remote_command(["true"], {"BAD NAME": "x"})
    with pytest.raises(ValueError, match="empty command"):
        remote_command([])


def _table(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    key = tmp_path / "id_ed25519"
    known = tmp_path / "known_hosts"
    key.write_text("key")
    known.write_text("hosts")
    return {
        "host": "login.example.org",
        "user": "pilots",
        "key_file": str(key),
        "known_hosts": str(known),
        **changes,
    }


def test_options_defaults(tmp_path: Path) -> None:
    options, rest = convert_options(_table(tmp_path), "q")
    assert (options.port, options.work_dir, options.mode) == (22, "gridpilot", "direct")
    assert rest == {}


def test_slurm_mode_passes_the_other_options_on(tmp_path: Path) -> None:
    options, rest = convert_options(
        _table(tmp_path, mode="slurm", partition="debug", time_limit=60), "q"
    )
    assert options.mode == "slurm"
    assert rest == {"partition": "debug", "time_limit": 60}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bogus": 1}, "unknown field `bogus`"),
        ({"partition": "debug"}, "unknown field `partition`"),
        ({"port": "22x"}, "`queues[q].backend_options.port`"),
        ({"port": 70000}, "queues[q].backend_options.port must be between 1 and 65535"),
        ({"mode": "pigeon"}, "`queues[q].backend_options.mode`"),
        ({"host": " "}, "queues[q].backend_options.host must not be empty"),
        ({"connect_timeout": 0}, "queues[q].backend_options.connect_timeout must be positive"),
        ({"cleanup_after": -1}, "queues[q].backend_options.cleanup_after must be positive"),
        ({"kill_grace": -0.5}, "queues[q].backend_options.kill_grace must not be negative"),
        ({"known_hosts": "/nonexistent"}, "backend_options.known_hosts: /nonexistent does not"),
    ],
)
def test_options_errors_name_the_field(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendConfigError) as caught:
        convert_options(_table(tmp_path, **changes), "q")
    assert message in str(caught.value)


def test_missing_required_option_is_named(tmp_path: Path) -> None:
    table = _table(tmp_path)
    del table["known_hosts"]
    with pytest.raises(BackendConfigError, match="known_hosts") as caught:
        convert_options(table, "q")
    assert "queues[q].backend_options" in str(caught.value)
