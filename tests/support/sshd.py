"""A real OpenSSH server for the SSH backend's tests, on 127.0.0.1 and a free port.

    with running_sshd(directory) as server:
        options = server.backend_options(work_dir="gp-test")

Everything the server needs (host key, client key, sshd_config, pid file, log) lives in
`directory`; the server runs in the foreground (`sshd -D`) as this process's child and is
stopped by its PID. Logins are for the tests' own account `gpilot` (created when missing,
with a home and an unlocked password field: `useradd` leaves the account locked, and with
`UsePAM no` sshd then refuses every key), through an authorized-keys file named after the
server's port, so servers of different test sessions never share one. See
/work/shared/BACKENDS.md "OpenSSH on a high port".
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from gridpilot.processes import stop_child
from tests.support.backends import require_debian_backend

USER = "gpilot"
SSHD = "/usr/sbin/sshd"
_TOOLS = (SSHD, "ssh-keygen", "ssh-keyscan", "useradd", "usermod")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    home: Path
    # The client's private key (its public half is authorized for `user`).
    key_file: Path
    known_hosts: Path
    directory: Path
    log: Path
    pid: int

    def backend_options(self, **extra: Any) -> dict[str, Any]:
        """`backend_options` of an ssh queue that logs in to this server."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            **extra,
        }

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def sshd_available() -> bool:
    return os.geteuid() == 0 and all(
        shutil.which(tool) or os.access(tool, os.X_OK) for tool in _TOOLS
    )


def require_sshd() -> None:
    require_debian_backend(
        "OpenSSH server (run as root)",
        ["openssh-server", "openssh-client"],
        _TOOLS,
        sshd_available,
    )


def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """The tests' own login account: created with a home when missing, always unlocked."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    # A locked account ("!" in the password field) is refused by sshd without PAM.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o755, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    return entry


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def authorize_key(user: pwd.struct_passwd, public_key: str, file_name: str) -> Path:
    """Install `public_key` as ~user/.ssh/<file_name>, with the modes sshd insists on."""
    ssh_dir = Path(user.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, user.pw_uid, user.pw_gid)
    path = ssh_dir / file_name
    path.write_text(public_key)
    path.chmod(0o600)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _sshd_config(directory: Path, port: int, authorized_keys: str, sftp: bool) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {directory / 'host_ed25519_key'}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile .ssh/{authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            f"AllowUsers {USER}",
            "Subsystem sftp internal-sftp" if sftp else "# no sftp subsystem",
            "PrintMotd no",
            "LogLevel VERBOSE",
            # The director opens a channel per command; tests start many pilots at once.
            "MaxSessions 64",
            "MaxStartups 64",
            "",
        ]
    )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not listen on port {port} within {START_TIMEOUT} s")
        time.sleep(0.05)


def _keyscan(port: int) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        done = subprocess.run(
            ["ssh-keyscan", "-p", str(port), "-t", "ed25519", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.stdout.strip():
            return done.stdout
        if time.monotonic() > deadline:
            raise RuntimeError(f"ssh-keyscan found no host key on port {port}: {done.stderr}")
        time.sleep(0.1)


def start_sshd(directory: Path, *, sftp: bool = True) -> tuple[SshServer, subprocess.Popen[bytes]]:
    user = ensure_user()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _keygen(directory / "host_ed25519_key", "gridpilot-test-host")
    _keygen(directory / "client_ed25519_key", "gridpilot-test-client")
    port = free_port()
    authorize_key(
        user,
        (directory / "client_ed25519_key.pub").read_text(),
        f"authorized_keys.gridpilot-test-{port}",
    )
    config = directory / "sshd_config"
    config.write_text(_sshd_config(directory, port, f"authorized_keys.gridpilot-test-{port}", sftp))
    # Privilege separation directory; no package script creates it on these machines.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    checked = subprocess.run(
        [SSHD, "-t", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        raise RuntimeError(f"sshd refuses {config}: {checked.stderr.strip()}")
    log = directory / "sshd.log"
    proc = subprocess.Popen(
        [SSHD, "-D", "-f", str(config), "-E", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc, log)
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(_keyscan(port))
    except BaseException:
        stop_sshd(proc)
        raise
    server = SshServer(
        host="127.0.0.1",
        port=port,
        user=USER,
        home=Path(user.pw_dir),
        key_file=directory / "client_ed25519_key",
        known_hosts=known_hosts,
        directory=directory,
        log=log,
        pid=proc.pid,
    )
    return server, proc


def stop_sshd(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the listener by its PID (SIGKILL after STOP_TIMEOUT)."""
    stop_child(proc, STOP_TIMEOUT)


def kill_user_processes(user: str = USER) -> list[int]:
    """SIGKILL everything the tests' own account runs (pilots, payloads, sshd sessions);
    returns their PIDs. Only the tests use this account, so this ends nothing else."""
    uid = pwd.getpwnam(user).pw_uid
    killed: list[int] = []
    for proc in psutil.process_iter(["pid", "uids"]):
        uids = proc.info["uids"]
        if uids is not None and uid in (uids.real, uids.effective):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed.append(proc.info["pid"])
    return killed


@contextlib.contextmanager
def running_sshd(directory: Path, *, sftp: bool = True) -> Iterator[SshServer]:
    """A started server (`sftp=False`: without the SFTP subsystem), stopped afterwards."""
    require_sshd()
    server, proc = start_sshd(directory, sftp=sftp)
    try:
        yield server
    finally:
        stop_sshd(proc)
        kill_user_processes(server.user)
        with contextlib.suppress(FileNotFoundError):
            (server.home / ".ssh" / f"authorized_keys.gridpilot-test-{server.port}").unlink()
