"""A real HTCondor schedd for tests -- the engine an HTCondor-CE is built on -- in a Debian 13
root, since Debian 12 has no HTCondor (docs: /work/shared/BACKENDS.md).

The root is made once per machine with `debootstrap --variant=minbase trixie` plus Debian's
`minicondor` and `python3` (the worker node's Python), and kept in CACHE_ROOT with a marker
file naming the recipe: later test sessions reuse it, CI builds it fresh (~1 min). Each test
session then gets its own daemons: /proc, /dev and /sys bind-mounted into the root, a private
directory inside it (/var/lib/gridpilot-sessions/<id>: configuration, spool, log, execute,
signing key), `chroot ROOT /usr/sbin/condor_master -f` as a child of the test process, and an
IDTOKEN for the test identity (`griduser`, an account of the root) made with
`condor_token_create`. The host talks to it with the PyPI bindings, as the director does.

Stopping sends the master SIGQUIT (fast shutdown), kills whatever of this session still runs
in the root, unmounts the binds (also when the start failed) and checks that nothing of the
session is left running or mounted. The root shares the host's network namespace: jobs reach
a central on 127.0.0.1, and host directories a test shares (`share`) appear at the same
path inside the root.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

from tests.support.backends import require_backend, require_debian_backend

CACHE_ROOT = Path(os.environ.get("GRIDPILOT_TEST_CACHE", "/var/cache/gridpilot-tests"))
ROOT = CACHE_ROOT / "trixie-condor"
READY_MARKER = ".gridpilot-ready"
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
CHROOT_PACKAGES = ("minicondor", "python3")
# Changing the recipe (packages, user) makes the next session rebuild the cached root.
RECIPE = f"debootstrap --variant=minbase {SUITE}; {' '.join(CHROOT_PACKAGES)}; user griduser; v1"
BINDS = ("proc", "dev", "sys")

USER = "griduser"
DOMAIN = "gridpilot.test"
IDENTITY = f"{USER}@{DOMAIN}"
SCHEDD_NAME = "ce-test"
CE_PORT = 9619
# The worker node's Python, inside the root.
NODE_PYTHON = "/usr/bin/python3"
SESSIONS = "/var/lib/gridpilot-sessions"

BUILD_TIMEOUT = 900.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 60.0
T = TypeVar("T")
_HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---- mounts ------------------------------------------------------------------------------------


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), innermost last."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _run(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False,
        env={"PATH": _HOST_PATH, "LANG": "C.UTF-8"},
    )  # fmt: skip


def _checked(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
    done = _run(argv, timeout)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({done.returncode}): {' '.join(said)}")
    return done.stdout


def bind(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    _checked(["mount", "--bind", str(source), str(target)])


def unbind(target: Path) -> None:
    if _run(["umount", str(target)]).returncode != 0:
        _checked(["umount", "-l", str(target)])


@contextlib.contextmanager
def system_binds(root: Path) -> Iterator[None]:
    """/proc, /dev and /sys of the host inside `root` (one layer each, removed after)."""
    done: list[Path] = []
    try:
        for name in BINDS:
            bind(Path("/") / name, root / name)
            done.append(root / name)
        yield
    finally:
        for target in reversed(done):
            unbind(target)


# ---- the cached root ---------------------------------------------------------------------------


def _chroot_env() -> dict[str, str]:
    return {"PATH": _HOST_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


def _in_root(root: Path, *argv: str, timeout: float = COMMAND_TIMEOUT) -> str:
    done = subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, timeout=timeout,
        env=_chroot_env(), check=False,
    )  # fmt: skip
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"in {root}: {' '.join(argv[:3])} failed: {' '.join(said)}")
    return done.stdout


def root_ready(root: Path = ROOT) -> bool:
    marker = root / READY_MARKER
    return marker.is_file() and marker.read_text().strip() == RECIPE


def build_root(root: Path = ROOT) -> float:
    """Make the cached root unless it is there; returns the seconds it took (0: cached)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f"{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root_ready(root):
            return 0.0
        started = time.monotonic()
        if root.exists():
            # A partial or outdated build. Never delete through a mount: that would be the host's.
            if mounts_under(root):
                raise RuntimeError(f"{root} has mounts {mounts_under(root)}; not removing it")
            shutil.rmtree(root)
        staging = root.with_name(root.name + ".building")
        if staging.exists():
            if mounts_under(staging):
                raise RuntimeError(f"{staging} has mounts; not removing it")
            shutil.rmtree(staging)
        _checked(["debootstrap", "--variant=minbase", SUITE, str(staging), MIRROR], BUILD_TIMEOUT)
        for name in ("hosts", "resolv.conf"):
            shutil.copyfile(Path("/etc") / name, staging / "etc" / name)
        with system_binds(staging):
            _in_root(staging, "apt-get", "update", "-q", timeout=BUILD_TIMEOUT)
            _in_root(staging, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                     *CHROOT_PACKAGES, timeout=BUILD_TIMEOUT)  # fmt: skip
            _in_root(staging, "useradd", "-m", "-s", "/bin/sh", USER)
            _in_root(staging, "apt-get", "clean")
        (staging / READY_MARKER).write_text(RECIPE + "\n")
        staging.rename(root)
        return time.monotonic() - started


def htcondor_available() -> bool:
    return (
        os.geteuid() == 0
        and shutil.which("debootstrap") is not None
        and shutil.which("chroot") is not None
        and importlib.util.find_spec("htcondor2") is not None
    )


def require_htcondor() -> None:
    """Skip (outside CI) or fail (CI) without root, debootstrap (installed when missing) or
    the PyPI bindings."""
    require_debian_backend(
        "debootstrap (a Debian 13 root with HTCondor's minicondor, run as root)",
        ["debootstrap"],
        ["debootstrap"],
        lambda: shutil.which("debootstrap") is not None and os.geteuid() == 0,
    )
    require_backend(
        importlib.util.find_spec("htcondor2") is not None,
        "the HTCondor Python bindings",
        "pip install htcondor",
    )


# ---- the daemons of one test session ---------------------------------------------------------


@dataclass(frozen=True)
class HTCondorCE:
    """What tests (and the backend under test) need: the CE's collector and schedd name, a
    token for the test identity, and ways to act on the CE as its admin would."""

    collector: str
    schedd: str
    token_file: Path
    root: Path
    session: str
    daemons: HTCondorDaemons = field(repr=False, compare=False)
    python: str = NODE_PYTHON

    @property
    def port(self) -> int:
        return int(self.collector.rsplit(":", 1)[1])

    def run(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """An HTCondor tool inside the root, as root (a queue super user), on this session."""
        return self.daemons.run(*argv, timeout=timeout)

    def token(self, identity: str = IDENTITY, lifetime: int = 86400) -> str:
        return self.daemons.make_token(identity, lifetime)

    def share(self, path: Path) -> contextlib.AbstractContextManager[None]:
        return self.daemons.share(path)

    def host_path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")


class HTCondorDaemons:
    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.session_id = uuid.uuid4().hex[:12]
        self.session = f"{SESSIONS}/{self.session_id}"
        self.session_host = root / self.session.lstrip("/")
        self.config = f"{self.session}/condor_config"
        self.port = 0
        self._master: subprocess.Popen[bytes] | None = None
        self._baseline: list[str] = []
        self._mounted: list[Path] = []
        self._shares: list[Path] = []

    # ---- tools ----

    def run(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.root), *argv], capture_output=True, text=True, timeout=timeout,
            env={**_chroot_env(), "CONDOR_CONFIG": self.config}, check=False,
        )  # fmt: skip

    def make_token(self, identity: str, lifetime: int) -> str:
        done = self.run("condor_token_create", "-identity", identity, "-lifetime", str(lifetime))
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"condor_token_create failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def log_tail(self, lines: int = 25) -> str:
        parts = []
        for name in ("MasterLog", "SchedLog", "StartLog", "master.out"):
            path = self.session_host / "log" / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---- start ----

    def start(self) -> HTCondorCE:
        self._baseline = mounts_under(self.root)
        for name in ("hosts", "resolv.conf"):
            shutil.copyfile(Path("/etc") / name, self.root / "etc" / name)
        for name in BINDS:
            bind(Path("/") / name, self.root / name)
            self._mounted.append(self.root / name)
        for name in ("spool", "log", "execute", "lock", "run", "passwords.d", "tokens.d", "client"):
            (self.session_host / name).mkdir(parents=True, exist_ok=True)
        self.port = _pick_port()
        (self.session_host / "condor_config").write_text(self.config_text())
        _in_root(self.root, "chown", "-R", "condor:condor", *(
            f"{self.session}/{d}" for d in ("spool", "log", "execute", "lock", "run")
        ))  # fmt: skip
        for name in ("passwords.d", "tokens.d", "client"):
            (self.session_host / name).chmod(0o700)
        with (self.session_host / "log" / "master.out").open("wb") as out:
            self._master = subprocess.Popen(
                ["chroot", str(self.root), "/usr/sbin/condor_master", "-f"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**_chroot_env(), "CONDOR_CONFIG": self.config},
                start_new_session=True,
            )
        self._wait((self.session_host / "passwords.d" / "POOL").exists, "the pool key")
        token_file = self.session_host / "client" / "griduser.token"
        token_file.write_text(self.make_token(IDENTITY, 86400) + "\n")
        token_file.chmod(0o600)
        schedd = self._wait(self._schedd_name, "the schedd in the collector")
        self._wait(self._slots, "the startd's slots in the collector")
        return HTCondorCE(
            collector=f"127.0.0.1:{self.port}",
            schedd=schedd,
            token_file=token_file,
            root=self.root,
            session=self.session,
            daemons=self,
        )

    def config_text(self) -> str:
        """A personal pool (collector, negotiator, schedd, startd) on 127.0.0.1, with the
        drop-in of BACKENDS.md and short intervals, everything of the session in its dir."""
        s = self.session
        return f"""\
include : /etc/condor/condor_config
# Only this file: the package's config.d would come after it and win.
LOCAL_CONFIG_DIR =
LOCAL_CONFIG_FILE =
use ROLE: CentralManager
use ROLE: Submit
use ROLE: Execute
use security:recommended_v9_0
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
ENABLE_IPV6 = False
CONDOR_HOST = 127.0.0.1
UID_DOMAIN = {DOMAIN}
TRUST_DOMAIN = {DOMAIN}
SEC_DEFAULT_AUTHENTICATION = REQUIRED
SEC_DEFAULT_INTEGRITY = REQUIRED
ALLOW_DAEMON = condor@$(UID_DOMAIN)
ALLOW_NEGOTIATOR = condor@$(UID_DOMAIN)
ALLOW_ADMINISTRATOR = root@$(UID_DOMAIN) condor@$(UID_DOMAIN)
ALLOW_WRITE = *
ALLOW_READ = *
LOCAL_DIR = {s}
SPOOL = {s}/spool
LOG = {s}/log
EXECUTE = {s}/execute
LOCK = {s}/lock
RUN = {s}/run
SEC_PASSWORD_DIRECTORY = {s}/passwords.d
SEC_TOKEN_SYSTEM_DIRECTORY = {s}/tokens.d
BASE_CGROUP =
CGROUP_MEMORY_LIMIT_POLICY = none
USE_PID_NAMESPACES = False
DISCARD_SESSION_KEYRING_ON_STARTUP = False
MOUNT_UNDER_SCRATCH =
RUNBENCHMARKS = 0
# More slots than cores: pilots mostly wait, and tests must not queue behind sleepers.
NUM_CPUS = 8
USE_SHARED_PORT = True
SHARED_PORT_PORT = {self.port}
COLLECTOR_HOST = 127.0.0.1:{self.port}
SCHEDD_NAME = {SCHEDD_NAME}
SCHEDD_INTERVAL = 1
NEGOTIATOR_INTERVAL = 1
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
STARTER_UPDATE_INTERVAL = 1
SHADOW_QUEUE_UPDATE_INTERVAL = 1
UPDATE_INTERVAL = 1
JOB_START_DELAY = 0
PERIODIC_EXPR_INTERVAL = 5
"""

    def _schedd_name(self) -> str:
        done = self.run("condor_status", "-schedd", "-af", "Name", timeout=15)
        names = done.stdout.split() if done.returncode == 0 else []
        return names[0] if names else ""

    def _slots(self) -> bool:
        done = self.run("condor_status", "-af", "Name", timeout=15)
        return done.returncode == 0 and bool(done.stdout.strip())

    def _wait(self, probe: Callable[[], T], what: str) -> T:
        deadline = time.monotonic() + START_TIMEOUT
        while not (value := probe()):
            if self._master is not None and self._master.poll() is not None:
                raise RuntimeError(
                    f"condor_master exited with {self._master.returncode} while waiting for "
                    f"{what}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.2)
        return value

    # ---- what belongs to this session ----

    def processes(self) -> list[psutil.Process]:
        """Live processes in the root that belong to this session: its daemons (their
        CONDOR_CONFIG), its jobs (their scratch directory), whatever names its directory."""
        root = str(self.root.resolve())
        mine = []
        for proc in psutil.process_iter(["pid", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            try:
                if os.readlink(f"/proc/{proc.pid}/root") != root:
                    continue
                seen = [proc.cwd(), *proc.cmdline(), *proc.environ().values()]
            except (OSError, psutil.Error):
                continue
            if any(self.session_id in text for text in seen):
                mine.append(proc)
        return mine

    def job_processes(self) -> list[psutil.Process]:
        """Processes of jobs (not daemons): those running in the session's execute dir."""
        execute = str(self.session_host / "execute")
        found = []
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                if proc.cwd().startswith(execute + "/"):
                    found.append(proc)
        return found

    def remove_all_jobs(self, timeout: float = 30.0) -> None:
        """Every job out of the queue (forced when removal hangs) and no job process left."""
        deadline = time.monotonic() + timeout
        self.run("condor_rm", "-all")
        while True:
            done = self.run("condor_q", "-allusers", "-af", "ClusterId", timeout=15)
            if done.returncode == 0 and not done.stdout.strip():
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs survive condor_rm: {done.stdout.split()}")
            self.run("condor_rm", "-forcex", "-all")
            time.sleep(0.3)
        while leftovers := self.job_processes():
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            if time.monotonic() > deadline:
                raise AssertionError(f"job processes survive: {[p.pid for p in leftovers]}")
            time.sleep(0.1)

    @contextlib.contextmanager
    def share(self, path: Path) -> Iterator[None]:
        """The host directory `path` at the same path inside the root, for the block."""
        path = path.resolve()
        target = self.root / str(path).lstrip("/")
        bind(path, target)
        self._shares.append(target)
        try:
            yield
        finally:
            self._shares.remove(target)
            unbind(target)
            with contextlib.suppress(OSError):
                target.rmdir()

    # ---- stop ----

    def stop(self) -> None:
        """Stop everything of the session and check that nothing is left; raises otherwise."""
        problems = []
        if self._master is not None and self._master.poll() is None:
            self._master.send_signal(signal.SIGQUIT)
            try:
                self._master.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append("condor_master ignored SIGQUIT")
                self._master.kill()
                self._master.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while leftovers := self.processes():
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            if time.monotonic() > deadline:
                problems.append(f"processes survive SIGKILL: {[p.pid for p in leftovers]}")
                break
            time.sleep(0.1)
        for target in [*reversed(self._shares), *reversed(self._mounted)]:
            try:
                unbind(target)
            except RuntimeError as exc:
                problems.append(str(exc))
        self._shares.clear()
        self._mounted.clear()
        extra = list(mounts_under(self.root))
        for point in self._baseline:
            if point in extra:
                extra.remove(point)
        if extra:
            problems.append(f"still mounted: {extra}")
        elif self.session_host.exists() and not mounts_under(self.session_host):
            shutil.rmtree(self.session_host, ignore_errors=True)
        if problems:
            raise AssertionError("HTCondor session not cleanly stopped: " + "; ".join(problems))


def _pick_port() -> int:
    """9619 (the CE's port) when free, else any free port: sessions may run side by side."""
    for port in (CE_PORT, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the daemons bind: old connections in TIME-WAIT do not make the port busy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            return chosen
    raise RuntimeError("no free port")


@contextlib.contextmanager
def running_htcondor(root: Path = ROOT) -> Iterator[HTCondorCE]:
    """A started schedd in the (built, cached) root; everything stopped and unmounted after."""
    build_root(root)
    daemons = HTCondorDaemons(root)
    try:
        yield daemons.start()
    finally:
        daemons.stop()


@contextlib.contextmanager
def htcondor_for_session() -> Iterator[HTCondorCE]:
    """The session's schedd (tests/sitedirectors/conftest.py): the root built on first use,
    stopped -- and checked to leave nothing running or mounted -- afterwards."""
    require_htcondor()
    try:
        build_root()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        # No network to Debian's mirror, say: skipped outside CI, a failure in CI.
        require_backend(False, f"a Debian {SUITE} root with HTCondor in {ROOT}", str(exc))
    with running_htcondor() as ce:
        yield ce
