"""A real one-node SLURM 22.05 for tests: munged, slurmctld and `slurmd -N localhost`.

Everything lives in a private directory (config, state, spool, pid and log files, and the
munge socket when this helper has to start munged), so nothing under /etc is touched and two
test sessions never share state: every SLURM command finds the cluster through `SLURM_CONF`
(`SlurmCluster.env`). The directory is made with mkdtemp under the system temp dir rather
than pytest's tmp_path, because the daemons run as the `slurm` and `munge` users, which cannot
enter pytest's 0700 base directory. A munged that already answers on the default socket is
reused; otherwise one is started on a socket in the private directory (`AuthInfo=socket=`),
so stopping it can never break another session that reused a system munged. Daemons run in
the foreground (`-D`/`-F`) as children of the test process and are stopped by PID.

Ports are free ports picked at start, so a second cluster (another test session) can run
next to this one. Scheduling runs at each submission (batch_sched_delay=0): a job starts
within about a second instead of up to three.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gridpilot.processes import as_user, stop_child
from tests.support.backends import require_debian_backend

PARTITION = "debug"
NODE = "localhost"
# More slots than the machine's 2 cores (config_overrides lets slurmd claim them): pilots
# mostly wait on the network, and tests must not queue behind each other's sleepers.
NODE_CPUS = 4
# Seconds a finished job stays visible in squeue/scontrol (the backend relies on it).
MIN_JOB_AGE = 600
# SIGTERM -> SIGKILL delay when a job is cancelled; short so tests end quickly.
KILL_WAIT = 5

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0

_PROGRAMS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "slurmctld", "slurmd")
_MUNGE_PROGRAMS = ("munged", "munge", "unmunge")
# Job states in which a job still holds (or waits for) resources.
_ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
)


@dataclass(frozen=True)
class SlurmCluster:
    """What a test needs to use the cluster: every SLURM command gets `env`."""

    conf: Path
    partition: str
    env: dict[str, str] = field(default_factory=dict)


def _program(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).is_file()), None
    )


def slurm_available() -> bool:
    return all(_program(name) for name in (*_PROGRAMS, *_MUNGE_PROGRAMS)) and os.geteuid() == 0


def require_slurm() -> None:
    """Skip (outside CI) or fail (CI) when SLURM, munge or root is missing."""
    require_debian_backend(
        "SLURM (slurmctld, slurmd, sbatch, munged) run as root",
        ["slurm-wlm", "munge"],
        [*_PROGRAMS, *_MUNGE_PROGRAMS],
        slurm_available,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def slurm_conf_text(root: Path, *, ctld_port: int, slurmd_port: int, munge_socket: str) -> str:
    """slurm.conf for one node called `localhost` with all paths under `root`."""
    lines = [
        "ClusterName=gridpilot",
        f"SlurmctldHost={NODE}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=slurm",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "SchedulerParameters=batch_sched_delay=0",
        f"MinJobAge={MIN_JOB_AGE}",
        f"KillWait={KILL_WAIT}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
    ]
    if munge_socket:
        lines.insert(7, f"AuthInfo=socket={munge_socket}")
    return "\n".join(lines) + "\n"


def system_munge_works() -> bool:
    """A munged already answers on the default socket (/run/munge)."""
    return _munge_roundtrip(None)


def _munge_roundtrip(socket_path: str | None) -> bool:
    extra = ["-S", socket_path] if socket_path else []
    munge, unmunge = _program("munge"), _program("unmunge")
    if munge is None or unmunge is None:
        return False
    try:
        cred = subprocess.run([munge, *extra, "-n"], capture_output=True, timeout=10, check=False)
        if cred.returncode != 0:
            return False
        back = subprocess.run(
            [unmunge, *extra], input=cred.stdout, capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return back.returncode == 0


def run_slurm(
    cluster: SlurmCluster, *argv: str, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a SLURM client command against the cluster (non-zero exit is returned, not raised)."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **cluster.env},
        check=False,
    )


def active_jobs(cluster: SlurmCluster) -> list[str]:
    """Ids (jobid or jobid_task) of the jobs still pending or running, one per array task."""
    done = run_slurm(cluster, "squeue", "-h", "--array", "-o", "%i %T")
    if done.returncode != 0:
        raise RuntimeError(f"squeue failed: {done.stderr.strip()}")
    jobs = []
    for line in done.stdout.splitlines():
        job, _, state = line.strip().partition(" ")
        if state in _ACTIVE_STATES:
            jobs.append(job)
    return jobs


def cancel_all_jobs(cluster: SlurmCluster, timeout: float = 30.0) -> None:
    """scancel every job of the cluster and wait until none holds the node any more."""
    deadline = time.monotonic() + timeout
    while jobs := active_jobs(cluster):
        run_slurm(cluster, "scancel", *jobs)
        if time.monotonic() > deadline:
            raise AssertionError(f"SLURM jobs survive scancel: {jobs}")
        time.sleep(0.2)


class SlurmDaemons:
    """munged (unless reused), slurmctld and slurmd as child processes of the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.munge_socket = ""
        self._munged: subprocess.Popen[bytes] | None = None
        self._slurmctld: subprocess.Popen[bytes] | None = None
        self._slurmd: subprocess.Popen[bytes] | None = None

    @property
    def cluster(self) -> SlurmCluster:
        return SlurmCluster(conf=self.conf, partition=PARTITION, env={"SLURM_CONF": str(self.conf)})

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.root / "log" / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---- start ----

    def start(self) -> None:
        self.root.chmod(0o755)
        for name in ("state", "log", "run", "spool"):
            (self.root / name).mkdir(exist_ok=True)
        for name in ("state", "log", "run"):
            shutil.chown(self.root / name, "slurm", "slurm")
        if not system_munge_works():
            self._start_munged()
        self.conf.write_text(
            slurm_conf_text(
                self.root,
                ctld_port=free_port(),
                slurmd_port=free_port(),
                munge_socket=self.munge_socket,
            )
        )
        self._start_slurmctld(clear_state=False)
        self._start_slurmd()
        self.wait_node_idle()

    def _start_munged(self) -> None:
        # munged insists that everyone may traverse its socket directory.
        munge_dir = self.root / "munge"
        munge_dir.mkdir(mode=0o755, exist_ok=True)
        munge_dir.chmod(0o755)
        shutil.chown(munge_dir, "munge", "munge")
        self.munge_socket = str(munge_dir / "munge.socket")
        log = (self.root / "log" / "munged.out").open("wb")
        with log:
            self._munged = subprocess.Popen(
                as_user(
                    [
                        str(_program("munged")),
                        "--foreground",
                        f"--socket={self.munge_socket}",
                        f"--pid-file={munge_dir / 'munged.pid'}",
                        f"--log-file={munge_dir / 'munged.log'}",
                        f"--seed-file={munge_dir / 'munged.seed'}",
                    ],
                    "munge",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait(lambda: _munge_roundtrip(self.munge_socket), "munged to answer")

    def _start_slurmctld(self, *, clear_state: bool) -> None:
        argv = [str(_program("slurmctld")), "-D", "-f", str(self.conf)]
        if clear_state:
            argv.append("-c")
        with (self.root / "log" / "slurmctld.out").open("ab") as log:
            self._slurmctld = subprocess.Popen(
                as_user(argv, "slurm"),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "SLURM_CONF": str(self.conf)},
            )

    def _start_slurmd(self) -> None:
        # -N: the node is "localhost" in slurm.conf whatever this machine's hostname is.
        argv = [str(_program("slurmd")), "-D", "-N", NODE, "-f", str(self.conf)]
        with (self.root / "log" / "slurmd.out").open("ab") as log:
            self._slurmd = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "SLURM_CONF": str(self.conf)},
            )

    def node_state(self) -> str:
        try:
            done = run_slurm(self.cluster, "sinfo", "-h", "-n", NODE, "-o", "%T", timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    def wait_node_idle(self) -> None:
        self._wait(lambda: self.node_state() == "idle", "the SLURM node to be idle")

    def _wait(self, probe: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not probe():
            daemons = {"munged": self._munged, "slurmctld": self._slurmctld, "slurmd": self._slurmd}
            for name, proc in daemons.items():
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for {what}\n"
                        f"{self.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.1)

    # ---- restart and stop ----

    def restart_controller(self, *, clear_state: bool) -> None:
        """Stop slurmctld and start it again; with `clear_state` it forgets every job (as a
        controller whose state was lost does), and slurmd kills the jobs it still runs."""
        _stop(self._slurmctld)
        self._start_slurmctld(clear_state=clear_state)
        self.wait_node_idle()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            cancel_all_jobs(self.cluster, timeout=STOP_TIMEOUT)
        for proc in (self._slurmd, self._slurmctld, self._munged):
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        stop_child(proc, STOP_TIMEOUT)


@contextlib.contextmanager
def running_slurm(base_dir: Path | None = None) -> Iterator[SlurmDaemons]:
    """A started cluster in a fresh private directory; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="gridpilot-slurm-", dir=base_dir))
    daemons = SlurmDaemons(root)
    try:
        daemons.start()
        yield daemons
    finally:
        daemons.stop()
        shutil.rmtree(root, ignore_errors=True)
