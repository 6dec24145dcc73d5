"""A real ARC CE for tests: A-REX 6 with the fork LRMS and its REST interface on 127.0.0.1.

    with running_arc() as ce:
        ce.options()            # backend_options for a queue submitting as the test user
        ce.forget_job(job_id)   # A-REX loses a job (its control files), as after a disaster
        ce.kill_payloads()      # the fork LRMS leaves killed jobs' processes running

Everything lives in a private directory made with mkdtemp under /tmp (jobs run as the mapped
account `griduser`, which cannot enter pytest's 0700 directories): the test CA and
certificates (made with `arcctl test-ca`), arc.conf, control and session directories, logs,
and the XML configuration of A-REX's core. Nothing under /etc is touched. The two daemons run
in the foreground as children of the test (`arc-arex-start -f`, `arc-arex-ws-start -f`, with
ARC_CONFIG and a minimal environment, which is all jobs inherit) and are stopped by PID.

Two settings make A-REX quicker than a production CE, so tests wait seconds instead of
minutes: `wakeupperiod` (how often A-REX looks at its jobs) and the information provider's
period, whose per-job files `action=status` reads (A-REX's default: 60 s). The latter is only
in A-REX's XML configuration (`InfoproviderWakeupPeriod`, in tenths of a second), which
`arc-arex-start` writes from a template without it: the core is given its own copy of that
template with the setting by a second `-c` (arched takes the last one). The dhparam file is
made before the web service starts, which otherwise spends minutes making a 4096-bit one.
See /work/shared/BACKENDS.md "ARC CE 6.17".
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from gridpilot.processes import stop_child
from tests.support.backends import require_debian_backend
from tests.support.processes import kill_pids, processes_under

PACKAGES = [
    "nordugrid-arc-arex",
    "nordugrid-arc-client",
    "nordugrid-arc-hed",
    "nordugrid-arc-plugins-arcrest",
    "nordugrid-arc-plugins-needed",
    "nordugrid-arc-plugins-internal",
    "nordugrid-arc-arcctl",
    "nordugrid-arc-arcctl-service",
]
AREX_START = "/usr/share/arc/arc-arex-start"
AREX_WS_START = "/usr/share/arc/arc-arex-ws-start"
_PROGRAMS = ("/usr/sbin/arched", AREX_START, AREX_WS_START, "arcctl", "openssl")
# The local account A-REX maps the test user to; jobs run as it.
MAPPED_USER = "griduser"
CA_ID = "gridpilot-test"
QUEUE = "fork"
# A-REX's job loop period (seconds) and the information provider's (tenths of a second).
WAKEUP_PERIOD = 5
INFOPROVIDER_PERIOD = 50

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def arc_available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(p) or Path(p).exists() for p in _PROGRAMS)


def require_arc() -> None:
    """Skip (outside CI) or fail (CI) when A-REX or root is missing; installs the Debian
    packages first when it can (tests/support/backends.py)."""
    require_debian_backend(
        "ARC CE (A-REX with the REST interface) run as root", PACKAGES, _PROGRAMS, arc_available
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(argv: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "-m", name])


@dataclass(frozen=True)
class Credential:
    cert: Path
    key: Path
    subject: str


class ArcCe:
    """A-REX in `root`: start(), stop(), and what tests need to use and disturb it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"https://localhost:{self.port}/arex"
        self.ca_dir = root / "ca"
        self.ca_file = self.ca_dir / f"ARC-TestCA-{CA_ID}.pem"
        self.certs = root / "certs"
        self.control_dir = root / "control"
        self.session_dir = root / "session"
        self.conf = root / "arc.conf"
        self._core: subprocess.Popen[bytes] | None = None
        self._ws: subprocess.Popen[bytes] | None = None
        self.user = Credential(Path(), Path(), "")
        self.stranger = Credential(Path(), Path(), "")

    # ---- setup ----

    def _arcctl(self, *args: str) -> None:
        _run(["arcctl", "test-ca", "--ca-dir", str(self.ca_dir), "--ca-id", CA_ID, *args],
             cwd=self.certs)  # fmt: skip

    def _usercert(self, name: str) -> Credential:
        # --no-auth: the subject goes to our own allowed-subjects file, not the system's.
        self._arcctl("usercert", "-n", name, "--no-auth")
        cert = self.certs / f"client-{name}-cert.pem"
        subject = _run(["openssl", "x509", "-in", str(cert), "-noout", "-subject",
                        "-nameopt", "compat"]).strip().removeprefix("subject=")  # fmt: skip
        return Credential(cert, self.certs / f"client-{name}-key.pem", subject)

    def _make_pki(self) -> None:
        self.certs.mkdir()
        self._arcctl("init")
        # The SAN must match the URL's host.
        self._arcctl("hostcert", "-n", "localhost")
        self.user = self._usercert("pilot")
        self.stranger = self._usercert("stranger")
        (self.root / "allowed-subjects").write_text(f'"{self.user.subject}"\n')

    def arc_conf(self) -> str:
        r = self.root
        return f"""\
[common]
hostname = localhost
x509_host_key = {self.certs}/host-localhost-key.pem
x509_host_cert = {self.certs}/host-localhost-cert.pem
x509_cert_dir = {self.ca_dir}

[authgroup:testusers]
file = {r}/allowed-subjects

[mapping]
map_to_user = testusers {MAPPED_USER}:{MAPPED_USER}

[lrms]
lrms = fork

[arex]
controldir = {self.control_dir}
sessiondir = {self.session_dir}
logfile = {r}/log/arex.log
joblog = {r}/log/arex-jobs.log
helperlog = {r}/log/job.helper.errors
pidfile = {r}/run/arex.pid
tmpdir = {r}/tmp
wakeupperiod = {WAKEUP_PERIOD}

[arex/ws]
wsurl = {self.endpoint}
logfile = {r}/log/ws.log
pidfile = {r}/run/arex-ws.pid

[arex/ws/jobs]
allowaccess = testusers

[infosys]
logfile = {r}/log/infoprovider.log

[infosys/glue2]

[infosys/cluster]

[queue:{QUEUE}]
"""

    def core_xml(self) -> str:
        """arc-arex-start's template with the information provider's period added."""
        r = self.root
        return f"""\
<?xml version="1.0"?>
<ArcConfig xmlns="http://www.nordugrid.org/schemas/ArcConfig/2007"
           xmlns:arex="http://www.nordugrid.org/schemas/a-rex/Config">
  <Server>
    <PidFile>{r}/run/arex.pid</PidFile>
    <Logger><File>{r}/log/arex.log</File><Level>INFO</Level></Logger>
    <Watchdog>false</Watchdog>
  </Server>
  <ModuleManager><Path>/usr/lib/arc/</Path></ModuleManager>
  <Plugins><Name>arex</Name></Plugins>
  <Chain>
    <Service name="a-rex" id="a-rex">
      <arex:endpoint>{self.endpoint}</arex:endpoint>
      <arex:gmconfig>{r}/run/arex.cfg</arex:gmconfig>
      <arex:InfoproviderWakeupPeriod>{INFOPROVIDER_PERIOD}</arex:InfoproviderWakeupPeriod>
    </Service>
  </Chain>
</ArcConfig>
"""

    def _prepare(self) -> None:
        self.root.chmod(0o755)
        _ensure_user(MAPPED_USER)
        for name in ("control", "log", "run"):
            (self.root / name).mkdir()
        self.session_dir.mkdir(mode=0o1777)
        self.session_dir.chmod(0o1777)
        (self.root / "tmp").mkdir(mode=0o1777)
        (self.root / "tmp").chmod(0o1777)
        self._make_pki()
        self.conf.write_text(self.arc_conf())
        (self.root / "arex-core.xml").write_text(self.core_xml())
        # Before the web service starts: otherwise it makes a 4096-bit one (many minutes).
        _run(["openssl", "dhparam", "-dsaparam", "-out",
              str(self.control_dir / "dhparam.pem"), "2048"])  # fmt: skip

    # ---- start and stop ----

    def _environment(self) -> dict[str, str]:
        # All that jobs inherit (the fork LRMS runs them with A-REX's environment).
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "ARC_CONFIG": str(self.conf),
        }

    def _launch(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.root / "log" / log_name).open("ab") as log:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                cwd=self.root,
                start_new_session=True,
            )

    def start(self) -> None:
        self._prepare()
        core_xml = str(self.root / "arex-core.xml")
        self._core = self._launch([AREX_START, "-f", "-c", core_xml], "arex.out")
        self._ws = self._launch([AREX_WS_START, "-f"], "ws.out")
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            for name, proc in (("arc-arex-start", self._core), ("arc-arex-ws-start", self._ws)):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"A-REX did not answer in {START_TIMEOUT} s\n{self.log_tail()}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return client.get(f"{self.endpoint}/rest/1.0/info").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in (self._ws, self._core):
            if proc is not None:
                stop_child(proc, STOP_TIMEOUT)
        self.kill_payloads()

    def log_tail(self, lines: int = 25) -> str:
        parts = []
        for name in ("arex.out", "ws.out", "arex.log", "ws.log"):
            path = self.root / "log" / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---- using it ----

    def options(self, **overrides: Any) -> dict[str, Any]:
        """backend_options of a queue submitting to this CE as the authorised test user."""
        return {
            "endpoint": self.endpoint,
            "queue": QUEUE,
            "cert_file": str(self.user.cert),
            "key_file": str(self.user.key),
            "ca_file": str(self.ca_file),
            "timeout": 30.0,
            **overrides,
        }

    def client(self, credential: Credential | None = None) -> httpx.Client:
        """The test's own REST client (as the test user unless told otherwise)."""
        chosen = credential or self.user
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(chosen.cert), str(chosen.key))
        return httpx.Client(verify=context, timeout=30.0, headers={"Accept": "application/json"})

    def jobs_action(self, action: str, job_ids: list[str]) -> Any:
        with self.client() as client:
            response = client.post(
                f"{self.endpoint}/rest/1.0/jobs",
                params={"action": action},
                json={"job": [{"id": job_id} for job_id in job_ids]},
            )
        response.raise_for_status()
        return response.json()

    def forget_job(self, job_id: str) -> None:
        """A-REX loses the job: its control files go (a lost control directory), so the CE
        answers 404 for it at once. The fork LRMS's processes of it keep running."""
        for path in self.control_dir.glob(f"job.{job_id}.*"):
            path.unlink(missing_ok=True)
        for path in self.control_dir.glob(f"*/job.{job_id}.*"):
            path.unlink(missing_ok=True)

    def payload_processes(self) -> list[psutil.Process]:
        """Processes of jobs (they run as the mapped account) started from this CE."""
        uid = pwd.getpwnam(MAPPED_USER).pw_uid
        found = []
        for proc in processes_under(self.root):
            with contextlib.suppress(psutil.Error):
                if proc.uids().real == uid:
                    found.append(proc)
        return found

    def kill_payloads(self, timeout: float = 10.0) -> None:
        """SIGKILL what jobs left running (the fork LRMS orphans a killed job's payload)."""
        deadline = time.monotonic() + timeout
        while leftovers := self.payload_processes():
            kill_pids(p.pid for p in leftovers)
            if time.monotonic() > deadline:
                raise AssertionError(f"job processes survive SIGKILL: {leftovers}")
            time.sleep(0.05)

    def kill_all_jobs(self) -> None:
        """Kill and clean every job the CE has, then their processes."""
        with self.client() as client:
            text = client.get(f"{self.endpoint}/rest/1.0/jobs").text
        # No jobs: an empty answer, not JSON.
        listed = json.loads(text) if text.strip() else {}
        jobs = listed.get("job") or [] if isinstance(listed, dict) else []
        if isinstance(jobs, dict):
            jobs = [jobs]
        ids = [job["id"] for job in jobs if isinstance(job, dict) and "id" in job]
        if ids:
            self.jobs_action("kill", ids)
            self.jobs_action("clean", ids)
        self.kill_payloads()


@contextlib.contextmanager
def running_arc(base_dir: Path | None = None) -> Iterator[ArcCe]:
    """A started A-REX in a fresh private directory; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="gridpilot-arc-", dir=base_dir))
    ce = ArcCe(root)
    try:
        ce.start()
        yield ce
    finally:
        ce.stop()
        shutil.rmtree(root, ignore_errors=True)
