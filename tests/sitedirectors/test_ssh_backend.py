"""The ssh backend (direct mode) against a real sshd: the conformance suite, plus what only
SSH has -- host keys, key authentication, unreachable hosts, files staged over SFTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from central.models.pilot_states import PilotState
from sitedirectors.base import (
    Backend,
    BackendContext,
    BackendError,
    PilotLaunch,
    SubmitOutcome,
    SubmitRequest,
)
from sitedirectors.remote import CommandError, CommandResult, CommandRunner
from sitedirectors.ssh import (
    SshBackend,
    SshOptions,
    SshSlurmBackend,
    convert_options,
    create_ssh_backend,
    parse_reference,
)
from sitedirectors.ssh_session import SftpFiles, SshRunner, SshSession, SshTarget
from tests.sitedirectors.conformance import QUEUE, BackendConformance, is_final, submit, wait_status
from tests.support.bundle import echo_bundle
from tests.support.sshd import SshServer, free_port, running_sshd

pytest_plugins = ["tests.sitedirectors.ssh_fixtures"]

# Every test of the test account `gpilot` on one worker: their clean-up ends its processes.
pytestmark = pytest.mark.xdist_group("ssh")

PYTHON = "/usr/bin/python3"


def python_launch(pilot_id: str, code: str, **fields: Any) -> PilotLaunch:
    return PilotLaunch(
        pilot_id, (PYTHON, "-c", code), environment={"GRIDPILOT_TEST": "1"}, **fields
    )


def ssh_options(server: SshServer, work_dir: Path | str, **extra: Any) -> SshOptions:
    table = server.backend_options(
        work_dir=str(work_dir), kill_grace=1.0, command_timeout=20.0, **extra
    )
    return convert_options(table, "test-queue")[0]


@pytest.fixture
def options(sshd_server: SshServer, remote_work_dir: Path) -> SshOptions:
    return ssh_options(sshd_server, remote_work_dir)


@pytest.fixture
def backend(options: SshOptions) -> Iterator[SshBackend]:
    instance = SshBackend(options)
    yield instance
    instance.close()


class TestSshConformance(BackendConformance):
    @pytest.fixture
    def restarted_backend(self, options: SshOptions) -> Iterator[Callable[[], Backend]]:
        made: list[SshBackend] = []

        def make() -> Backend:
            made.append(SshBackend(options))
            return made[-1]

        yield make
        for instance in made:
            instance.close()

    @pytest.fixture
    def launch_factory(self) -> Callable[[str, str], PilotLaunch]:
        return python_launch

    def vanish(self, reference: str) -> None:
        # As an OOM killer or an admin would: the whole group, behind the backend's back.
        _host, pid, _ = parse_reference(reference)
        os.killpg(pid, signal.SIGKILL)


class RecordingRunner:
    """The real runner, remembering every argv it was given."""

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner
        self.argvs: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        stdin: bytes | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.argvs.append(list(argv))
        return self.runner.run(argv, timeout=timeout, stdin=stdin, environment=environment)


# ---- the connection ----------------------------------------------------------------------------


def other_key(directory: Path, name: str) -> Path:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def test_wrong_host_key_is_a_clear_permanent_error(
    sshd_server: SshServer, remote_work_dir: Path, tmp_path: Path
) -> None:
    impostor = other_key(tmp_path, "impostor_host_key")
    known_hosts = tmp_path / "known_hosts"
    public = " ".join(impostor.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text(f"[127.0.0.1]:{sshd_server.port} {public}\n")
    backend = SshBackend(ssh_options(sshd_server, remote_work_dir, known_hosts=str(known_hosts)))
    try:
        [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
        expected = f"host key for 127.0.0.1:{sshd_server.port} does not match known_hosts"
        assert result.outcome is SubmitOutcome.FAILED
        assert expected in result.error
        assert str(known_hosts) in result.error
        with pytest.raises(BackendError, match="does not match known_hosts"):
            backend.status(["127.0.0.1:1:p1"])
    finally:
        backend.close()
    assert not remote_work_dir.exists()


def test_refused_key_is_a_clear_permanent_error(
    sshd_server: SshServer, remote_work_dir: Path, tmp_path: Path
) -> None:
    stranger = other_key(tmp_path, "stranger_key")
    backend = SshBackend(ssh_options(sshd_server, remote_work_dir, key_file=str(stranger)))
    try:
        results = backend.submit(
            SubmitRequest(QUEUE, (python_launch("p1", "pass"), python_launch("p2", "pass")))
        )
    finally:
        backend.close()
    assert [r.outcome for r in results] == [SubmitOutcome.FAILED] * 2
    assert "key authentication refused for gpilot@127.0.0.1" in results[0].error
    assert str(stranger) in results[0].error


def test_unreachable_port_is_transient(sshd_server: SshServer, remote_work_dir: Path) -> None:
    options = ssh_options(sshd_server, remote_work_dir, port=free_port(), connect_timeout=3.0)
    backend = SshBackend(options)
    try:
        [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
        assert result.outcome is SubmitOutcome.RETRY
        assert f"cannot connect to gpilot@127.0.0.1:{options.port}" in result.error
        with pytest.raises(CommandError) as caught:
            SshRunner(backend.session).run(["true"])
        assert caught.value.transient
        with pytest.raises(BackendError, match="cannot connect"):
            backend.status([f"127.0.0.1:1:{uuid.uuid4().hex}"])
    finally:
        backend.close()


def test_server_without_sftp_is_a_clear_permanent_error(tmp_path: Path) -> None:
    with running_sshd(tmp_path / "sshd", sftp=False) as server:
        backend = SshBackend(ssh_options(server, "gp-never-created"))
        try:
            [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
        finally:
            backend.close()
    assert result.outcome is SubmitOutcome.FAILED
    assert "refused the SFTP subsystem" in result.error


def test_reconnects_after_the_connection_dropped(
    backend: SshBackend, sshd_server: SshServer
) -> None:
    [ref] = submit(backend, python_launch(uuid.uuid4().hex, "pass"))
    wait_status(backend, ref, is_final)
    # The per-connection sshd processes end (a server restart, a reboot): the link is gone.
    for child in psutil.Process(sshd_server.pid).children(recursive=True):
        child.kill()
    time.sleep(0.3)
    assert backend.status([ref])[ref].state is PilotState.DONE
    assert SshRunner(backend.session).run(["echo", "again"]).stdout == "again\n"


def test_session_runs_argv_without_shell_interpretation(backend: SshBackend) -> None:
    tricky = ["a b", "$(id)", "'quoted'", "`id`", "x;y", "*", "\\", ""]
    done = SshRunner(backend.session).run(
        [PYTHON, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *tricky],
        environment={"GP_VALUE": "spaced $HOME"},
    )
    assert json.loads(done.stdout) == tricky
    env = SshRunner(backend.session).run(
        ["sh", "-c", 'echo "$GP_VALUE"'], environment={"GP_VALUE": "spaced $HOME"}
    )
    assert env.stdout == "spaced $HOME\n"
    with pytest.raises(CommandError, match="not found") as caught:
        SshRunner(backend.session).run(["gridpilot-no-such-program"])
    assert not caught.value.transient


def test_sftp_files(
    backend: SshBackend, remote_work_dir: Path, sshd_server: SshServer, tmp_path: Path
) -> None:
    files = SftpFiles(backend.session)
    base = str(remote_work_dir / "files")
    files.make_dirs(f"{base}/a/b", 0o700)
    files.make_dirs(f"{base}/a/b", 0o700)  # exists: fine
    files.write_file(f"{base}/a/secret", b"one\ntwo\nthree\n", 0o600)
    files.write_file(f"{base}/a/secret", b"first line\nsecond\nthird\n", 0o600)
    local = tmp_path / "big.bin"
    secret = remote_work_dir / "files" / "a" / "secret"
    assert secret.read_bytes() == b"first line\nsecond\nthird\n"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.stat().st_uid == sshd_server.home.stat().st_uid
    # No temporary files left next to it.
    assert sorted(p.name for p in secret.parent.iterdir()) == ["b", "secret"]
    assert files.exists(f"{base}/a/secret")
    assert not files.exists(f"{base}/nothing")
    assert files.size(f"{base}/a/secret") == 24
    assert files.size(f"{base}/nothing") is None
    assert files.tail(f"{base}/a/secret", 1000) == "first line\nsecond\nthird\n"
    assert files.tail(f"{base}/a/secret", 10) == "third\n"
    assert files.tail(f"{base}/nothing", 10) == ""
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    files.put_file(local, f"{base}/big", 0o644)
    remote_big = remote_work_dir / "files" / "big"
    assert remote_big.read_bytes() == local.read_bytes()
    assert remote_big.stat().st_mode & 0o777 == 0o644
    files.remove_tree(f"{base}/a")
    files.remove_tree(f"{base}/big")
    files.remove_tree(f"{base}/nothing")
    assert list((remote_work_dir / "files").iterdir()) == []
    assert files.home() == str(sshd_server.home)
    with pytest.raises(PermissionError):
        files.write_file("/etc/gridpilot-test-forbidden", b"x")


# ---- staging and starting ------------------------------------------------------------------


def test_token_never_in_argv_and_private_to_the_pilot_account(
    backend: SshBackend, remote_work_dir: Path, sshd_server: SshServer, tmp_path: Path
) -> None:
    token = "registration-token-" + uuid.uuid4().hex
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    code = (
        "import json, os, sys; a = sys.argv[1:]; path = a[a.index('--token-file') + 1]; "
        "print(json.dumps({'argv': a, 'token': open(path).read().strip(), "
        "'uid': os.getuid(), 'env': os.environ.get('GRIDPILOT_TEST'), "
        "'cmdline': open('/proc/self/cmdline', 'rb').read().decode(), "
        "'ppid_cmdline': open(f'/proc/{os.getppid()}/cmdline', 'rb').read().decode()}))"
    )
    recorder = RecordingRunner(backend.runner)
    backend.runner = recorder  # type: ignore[assignment]
    launch = python_launch(uuid.uuid4().hex, code, registration_token=token, ca=ca)
    [ref] = submit(backend, launch)
    assert wait_status(backend, ref, is_final).state is PilotState.DONE
    info = json.loads(backend.fetch_output(ref))
    pilot_dir = remote_work_dir / "pilots" / launch.pilot_id
    token_file = pilot_dir / "registration.token"
    assert info["argv"] == [
        "--token-file", str(token_file),
        "--ca", str(pilot_dir / "ca.pem"),
        "--work-dir", str(pilot_dir / "work"),
    ]  # fmt: skip
    assert info["token"] == token
    assert info["uid"] == sshd_server.home.stat().st_uid
    assert info["env"] == "1"
    assert token not in info["cmdline"]
    assert token not in info["ppid_cmdline"]
    assert all(token not in " ".join(argv) for argv in recorder.argvs)
    assert token not in (pilot_dir / "start.sh").read_text()
    stat = token_file.stat()
    assert stat.st_mode & 0o777 == 0o600
    assert stat.st_uid == sshd_server.home.stat().st_uid
    assert pilot_dir.stat().st_mode & 0o777 == 0o700
    assert (pilot_dir / "ca.pem").read_bytes() == ca.read_bytes()


def test_arguments_are_not_shell_split(backend: SshBackend) -> None:
    tricky = "a b; echo injected > $HOME/x 'quoted' $(id) `id` \"dq\""
    launch = python_launch(uuid.uuid4().hex, "import sys; print(repr(sys.argv[1]))")
    launch = PilotLaunch(launch.pilot_id, launch.command, arguments=(tricky,))
    [ref] = submit(backend, launch)
    wait_status(backend, ref, is_final)
    assert backend.fetch_output(ref).strip() == repr(tricky)


def test_pilot_leads_its_own_session_detached_from_ssh(backend: SshBackend) -> None:
    code = "import os; print(os.getsid(0), os.getpgid(0))"
    [ref] = submit(backend, python_launch(uuid.uuid4().hex, code))
    wait_status(backend, ref, is_final)
    _host, pid, _ = parse_reference(ref)
    assert backend.fetch_output(ref).split() == [str(pid), str(pid)]


def test_unsafe_or_existing_pilot_dirs_are_refused(
    backend: SshBackend, remote_work_dir: Path
) -> None:
    [unsafe] = backend.submit(SubmitRequest(QUEUE, (python_launch("../escape", "pass"),)))
    assert unsafe.outcome is SubmitOutcome.FAILED
    pilot_id = uuid.uuid4().hex
    (remote_work_dir / "pilots" / pilot_id).mkdir(parents=True)
    [exists] = backend.submit(SubmitRequest(QUEUE, (python_launch(pilot_id, "pass"),)))
    assert exists.outcome is SubmitOutcome.FAILED
    assert "exists" in exists.error
    no_bundle = PilotLaunch(uuid.uuid4().hex)
    [missing] = backend.submit(SubmitRequest(QUEUE, (no_bundle,)))
    assert missing.outcome is SubmitOutcome.FAILED
    assert "pilot_bundle" in missing.error


def test_cancel_kills_a_pilot_ignoring_sigterm(options: SshOptions, remote_work_dir: Path) -> None:
    backend = SshBackend(options)
    code = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(os.getpid(), flush=True); time.sleep(60)"
    )
    try:
        [ref] = submit(backend, python_launch(uuid.uuid4().hex, code))
        log_file = remote_work_dir / "pilots" / parse_reference(ref)[2] / "pilot.log"
        deadline = time.monotonic() + 10
        while not log_file.exists() or not log_file.read_text().strip():
            assert time.monotonic() < deadline, "pilot never started"
            time.sleep(0.05)
        child = psutil.Process(int(log_file.read_text()))
        started = time.monotonic()
        backend.cancel([ref])
        assert time.monotonic() - started >= 0.9  # waited the grace before SIGKILL
        child.wait(timeout=5)
        status = backend.status([ref])[ref]
        assert status.state is PilotState.ABORTED
        assert status.native == "cancelled"
    finally:
        backend.close()


def test_recycled_pid_is_not_mistaken_for_the_pilot(
    backend: SshBackend, remote_work_dir: Path
) -> None:
    [ref] = submit(backend, python_launch(uuid.uuid4().hex, "pass"))
    wait_status(backend, ref, is_final)
    host, _pid, pilot_id = parse_reference(ref)
    (remote_work_dir / "pilots" / pilot_id / "exit_code").unlink()
    # A live process that is not the pilot's launcher now holds "its" PID.
    fake = f"{host}:{os.getpid()}:{pilot_id}"
    status = backend.status([fake])[fake]
    assert status.state is PilotState.ABORTED
    assert status.native == "vanished"
    backend.cancel([fake])  # must not signal this process
    other = f"elsewhere.example:{os.getpid()}:{pilot_id}"
    assert backend.status([other])[other].state is PilotState.UNKNOWN


# ---- the bundle --------------------------------------------------------------------------------


def test_bundle_uploaded_once_and_verified_on_the_node(
    options: SshOptions, remote_work_dir: Path, tmp_path: Path
) -> None:
    bundle = echo_bundle(tmp_path)
    backend = SshBackend(options, bundle)
    uploads: list[str] = []
    put_file = backend.files.put_file

    def counting_put(local: Path, path: str, mode: int = 0o644) -> None:
        uploads.append(path)
        put_file(local, path, mode)

    backend.files.put_file = counting_put  # type: ignore[method-assign]
    try:
        refs = submit(backend, PilotLaunch(uuid.uuid4().hex, arguments=("--one",)))
        refs += submit(
            backend,
            PilotLaunch(uuid.uuid4().hex, arguments=("--two",)),
            PilotLaunch(uuid.uuid4().hex, arguments=("--three",)),
        )
        remote = remote_work_dir / "bundles" / bundle.file_name
        assert uploads == [str(remote)]
        assert remote.read_bytes() == bundle.path.read_bytes()
        outputs = []
        for ref in refs:
            assert wait_status(backend, ref, is_final).state is PilotState.DONE
            outputs.append(backend.fetch_output(ref))
        cache = remote_work_dir / "bundle-cache" / bundle.sha256
        assert all(out.startswith(f"launcher from {cache}: --") for out in outputs), outputs
        assert [p.name for p in (remote_work_dir / "bundle-cache").iterdir()] == [bundle.sha256]
        # A damaged copy (size differs) is replaced on the next submission.
        remote.write_bytes(b"truncated")
        submit(backend, PilotLaunch(uuid.uuid4().hex))
        assert len(uploads) == 2
        assert remote.read_bytes() == bundle.path.read_bytes()
    finally:
        backend.close()


# ---- cleanup -----------------------------------------------------------------------------------


def test_cleanup_removes_old_leftovers_but_not_running_pilots(
    backend: SshBackend, remote_work_dir: Path
) -> None:
    old_done, fresh_done = submit(
        backend, python_launch(uuid.uuid4().hex, "pass"), python_launch(uuid.uuid4().hex, "pass")
    )
    [old_running] = submit(backend, python_launch(uuid.uuid4().hex, "import time; time.sleep(60)"))
    for ref in (old_done, fresh_done):
        wait_status(backend, ref, is_final)
    pilots = remote_work_dir / "pilots"
    stranger = pilots / "left-by-a-crashed-submission"
    stranger.mkdir()
    two_days_ago = time.time() - 2 * 86400
    for ref in (old_done, old_running):
        os.utime(pilots / parse_reference(ref)[2], (two_days_ago, two_days_ago))
    os.utime(stranger, (two_days_ago, two_days_ago))
    backend.options = ssh_options_copy(backend.options, cleanup_after=1.0)
    backend.cleanup([])  # forgotten pilots: only the sweep by age
    left = {p.name for p in pilots.iterdir()}
    assert left == {parse_reference(fresh_done)[2], parse_reference(old_running)[2]}
    assert backend.status([old_running])[old_running].state is PilotState.RUNNING
    backend.cancel([old_running])


def ssh_options_copy(options: SshOptions, **changes: Any) -> SshOptions:
    return msgspec.structs.replace(options, **changes)


# ---- options -----------------------------------------------------------------------------------


def test_factory_builds_a_direct_backend_without_connecting(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    table = sshd_server.backend_options(port=free_port())
    backend = create_ssh_backend(BackendContext("q", tmp_path, table))
    assert isinstance(backend, SshBackend)
    assert backend.options.work_dir == "gridpilot"
    assert backend.options.mode == "direct"
    backend.close()


def test_session_target_text() -> None:
    target = SshTarget("h", 2222, "u", Path("k"), Path("kh"))
    assert str(target) == "u@h:2222"
    SshSession(target).close()  # never opened: nothing to do


def test_slurm_mode_is_built_without_connecting_and_defers_when_unreachable(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    table = sshd_server.backend_options(
        port=free_port(), mode="slurm", partition="debug", connect_timeout=3.0
    )
    backend = create_ssh_backend(BackendContext("q", tmp_path, table))
    try:
        assert isinstance(backend, SshSlurmBackend)
        assert backend.options.partition == "debug"
        [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
        assert result.outcome is SubmitOutcome.RETRY
        assert "cannot connect" in result.error
        with pytest.raises(BackendError, match="cannot connect"):
            backend.status(["123"])
    finally:
        backend.close()
