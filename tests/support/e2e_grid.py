"""A whole grid on this host for end-to-end tests.

    with e2e_grid(tmp_path, {"stalled_after": 4.0}) as grid:
        grid.register_files({lfn: (SITE_A.se, data)})
        grid.cli("gbasf2", str(grid.write_steering()), "-p", "proj", ...)
        grid.start_director(SITE_A)
        grid.wait(lambda: ..., timeout=60, what="all jobs Done")

Central runs as a subprocess (tests/support/central_process.py) with two sites, each with one
CE/queue and a local file:// SE (its default output SE), a failover SE at a third, CE-less
site, and short periods. Directors, pilots, wrappers, the stand-in basf2 and the user CLI are
all real processes. On exit every process the grid started is ended (see processes.py).

Everything is TLS with tokens, as in production: the user's CLI has the CA and a user token
(GRIDPILOT_CA, GRIDPILOT_TOKEN_FILE), each director its site_director token, a hand-started
pilot a single-use registration token in a 0600 file; `client` acts as the user, `admin`
as an operator.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from gridpilot.channel import write_token_file
from gridpilot.checksum import adler32_of_bytes
from gridpilot.client import CentralClient
from gridpilot.client_errors import CentralUnreachableError
from gridpilot.client_settings import ClientSettings
from gridpilot.demo.release import create_release, setup_template
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, data_pb2, jobs_pb2
from tests.support.central_process import CentralHandle, merge
from tests.support.e2e_actors import (
    DirectorProcess,
    PilotProcess,
    start_director,
    start_pilot,
    subprocess_env,
    tail,
)
from tests.support.processes import kill_everything_under
from wrapper.se import open_storage

T = TypeVar("T")

OWNER = "alice"
GROUP = "belle_user"
RELEASE = "release-08-00-00"
FAILOVER_SITE = "GP.DATA.test"
FAILOVER_SE = "FAILOVER-SE"
CLI_TIMEOUT = 60.0
_JOB_DIR = re.compile(r"^job_(\d+)_(\d+)$")

# The user commands, as pyproject.toml's [project.scripts] declares them.
ENTRY_POINTS: dict[str, tuple[str, str]] = {
    "gbasf2": ("gridpilot.cli.gbasf2", "main"),
    "gb2_job_status": ("gridpilot.cli.gb2_jobs", "job_status_main"),
    "gb2_job_kill": ("gridpilot.cli.gb2_jobs", "job_kill_main"),
    "gb2_ds_list": ("gridpilot.cli.gb2_ds", "ds_list_main"),
    "gb2_ds_get": ("gridpilot.cli.gb2_ds", "ds_get_main"),
    "gb2_replica_list": ("gridpilot.cli.gb2_ds_admin", "replica_list_main"),
}


@dataclass(frozen=True)
class Site:
    name: str
    ce: str
    queue: str
    se: str


SITE_A = Site("GP.SITEA.test", "ce-a.test", "qa", "SITEA-SE")
SITE_B = Site("GP.SITEB.test", "ce-b.test", "qb", "SITEB-SE")


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def grid_config(root: Path, central: Mapping[str, Any]) -> dict[str, Any]:
    se_root = root / "se"
    periods = {
        "heartbeat_period": 0.5,
        "stalled_after": 5.0,
        "reschedule_stalled_after": 3.0,
        "stalled_check_period": 0.25,
        "failover_period": 0.25,
    }
    sites = [
        {
            "name": s.name,
            "ces": [{"name": s.ce, "queues": [s.queue]}],
            "local_ses": [s.se],
            "default_output_se": s.se,
        }
        for s in (SITE_A, SITE_B)
    ]
    ses = [
        {"name": SITE_A.se, "site": SITE_A.name, "url": f"file://{se_root / SITE_A.se}"},
        {"name": SITE_B.se, "site": SITE_B.name, "url": f"file://{se_root / SITE_B.se}"},
        {"name": FAILOVER_SE, "site": FAILOVER_SITE, "url": f"file://{se_root / FAILOVER_SE}"},
    ]
    return {
        "central": {
            "listen": "127.0.0.1:0",
            "data_dir": str(root / "central" / "data"),
            "log_level": "INFO",
            **merge(periods, central),
        },
        "sites": [*sites, {"name": FAILOVER_SITE}],
        "storage_elements": ses,
        "distances": {SITE_A.name: {SITE_B.se: 10}, SITE_B.name: {SITE_A.se: 10}},
        "failover": {"ses": [FAILOVER_SE]},
    }


def status_name(status: common_pb2.JobStatus.ValueType) -> str:
    return common_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_")


class Grid:
    """Central plus whatever directors and pilots a test starts; see the module docstring.
    `config` replaces top-level tables of central's configuration (other SEs, distances)."""

    def __init__(
        self, root: Path, central: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> None:
        self.root = root.resolve()
        (self.root / "central").mkdir(parents=True, exist_ok=True)
        settings = {**grid_config(self.root, central), **(config or {})}
        self.central = CentralHandle(self.root / "central", settings)
        create_release(self.root / "releases", RELEASE)
        self.software_setup = setup_template(self.root / "releases")
        self.env = subprocess_env(self.root)
        self.user_env = dict(self.env)
        self.directors: list[DirectorProcess] = []
        self.pilots: list[PilotProcess] = []
        self._client: CentralClient | None = None
        self._admin: CentralClient | None = None

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.central.start()
        # After the start: central's signing keys exist, tokens are signed with them.
        token_file = self.root / "user" / "token"
        write_token_file(token_file, self.central.user_token(OWNER, GROUP))
        self.user_env["GRIDPILOT_CA"] = str(self.ca_path)
        self.user_env["GRIDPILOT_TOKEN_FILE"] = str(token_file)
        self._client = self._open_client(self.central.user_token(OWNER, GROUP), OWNER)
        self._admin = self._open_client(self.central.admin_token(), "admin")

    def _open_client(self, token: str, user: str) -> CentralClient:
        settings = ClientSettings(
            central=self.central.target, token=token, tls=ClientTls(ca=self.ca_path), user=user
        )
        return CentralClient(settings).__enter__()

    @property
    def ca_path(self) -> Path:
        if self.central.ca_path is None:
            raise RuntimeError("the grid's central runs without TLS")
        return self.central.ca_path

    def close(self) -> None:
        try:
            for director in self.directors:
                director.stop()
            self.central.stop()
        finally:
            # Pilots, wrappers and payloads left behind, and central if its stop failed.
            kill_everything_under(self.root)
            for client in (self._client, self._admin):
                if client is not None:
                    client.close()

    @property
    def client(self) -> CentralClient:
        """Central as the user (OWNER) sees it."""
        if self._client is None:
            raise RuntimeError("the grid is not started")
        return self._client

    @property
    def admin(self) -> CentralClient:
        """Central as an operator sees it (pilots, catalog writes)."""
        if self._admin is None:
            raise RuntimeError("the grid is not started")
        return self._admin

    # ---- actors -------------------------------------------------------------------------------

    def start_director(
        self, site: Site, *, max_total: int = 2, idle_timeout: float = 3.0
    ) -> DirectorProcess:
        name = f"director-{site.queue}"
        work_dir = self.root / name
        token_file = self.root / f"{name}.token"
        write_token_file(token_file, self.central.director_token([site.name], name=name))
        config = {
            "director": {
                "name": name,
                "central": self.central.target,
                "ca": str(self.ca_path),
                "token_file": str(token_file),
                "cycle_period": 0.5,
                "work_dir": str(work_dir),
                "failing_queue_skip_cycles": 1,
                "rpc_timeout": 5.0,
                "cleanup_after": 3600.0,
                "log_level": "INFO",
            },
            "queues": [
                {
                    "name": site.queue,
                    "site": site.name,
                    "ce": site.ce,
                    "backend": "local",
                    "max_waiting": max_total,
                    "max_total": max_total,
                    "max_per_cycle": max_total,
                    "ramp_up_step": max_total,
                    "slots": 1,
                    "memory_mb": 2000,
                    "pilot": {
                        "idle_timeout": idle_timeout,
                        "software_setup": self.software_setup,
                        "extra_args": ["--min-disk-mb", "1", "--kill-grace", "2"],
                    },
                    "backend_options": {"kill_grace": 1.0},
                }
            ],
        }
        config_path = self.root / f"{name}.toml"
        config_path.write_text(tomli_w.dumps(config))
        director = start_director(name, config_path, work_dir, self.env)
        self.directors.append(director)
        return director

    def start_pilot(self, site: Site, name: str, idle_timeout: float = 10.0) -> PilotProcess:
        """A pilot started by hand with what a director gives one: a single-use registration
        token (a 0600 file, never argv) and the CA."""
        token_file = self.root / "hand-pilots" / f"{name}.registration.token"
        token = self.central.registration_token(site.name, site.ce, site.queue, director="hand")
        write_token_file(token_file, token)
        argv = [
            "--central", self.central.target,
            "--ca", str(self.ca_path), "--token-file", str(token_file),
            "--site", site.name, "--ce", site.ce, "--queue", site.queue,
            "--slots", "1", "--memory-mb", "2000",
            "--software-setup", self.software_setup,
            "--idle-timeout", f"{idle_timeout:g}",
            "--min-disk-mb", "1", "--kill-grace", "2",
        ]  # fmt: skip
        pilot = start_pilot(name, argv, self.root / "hand-pilots" / name, self.env)
        self.pilots.append(pilot)
        return pilot

    # ---- the user's side ----------------------------------------------------------------------

    def cli(self, command: str, *args: str, central: str | None = None) -> CliResult:
        """Run a user command as its own process, like its console script."""
        module, func = ENTRY_POINTS[command]
        code = f"import sys; from {module} import {func}; sys.exit({func}())"
        argv = [sys.executable, "-c", code, *args]
        argv += ["--central", central or self.central.target]
        cwd = self.root / "user"
        cwd.mkdir(exist_ok=True)
        done = subprocess.run(
            argv,
            check=False,
            cwd=cwd,
            env=self.user_env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    def write_steering(self, name: str = "steer.py") -> Path:
        path = self.root / "user" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("import basf2\nbasf2.process(basf2.create_path())\n")
        return path

    def register_files(self, files: Mapping[str, tuple[str, bytes]]) -> None:
        """Put each LFN's bytes on its SE and register the replica, as data management would."""
        self.register_replicas({lfn: ((se,), data) for lfn, (se, data) in files.items()})

    def register_replicas(self, files: Mapping[str, tuple[Sequence[str], bytes]]) -> None:
        """Put each LFN's bytes on every one of its SEs (through the storage plugins) and
        register the replicas."""
        urls = {se["name"]: se["url"] for se in self.central.config["storage_elements"]}
        registrations = []
        local = self.root / "upload.tmp"
        for lfn, (ses, data) in files.items():
            local.write_bytes(data)
            for se in ses:
                storage = open_storage(urls[se])
                try:
                    storage.upload(local, lfn)
                finally:
                    storage.close()
                registrations.append(
                    data_pb2.ReplicaRegistration(
                        lfn=lfn, se=se, size=len(data), adler32=adler32_of_bytes(data)
                    )
                )
        local.unlink(missing_ok=True)
        request = data_pb2.RegisterReplicasRequest(replicas=registrations)
        self.call(self.admin.data.RegisterReplicas, request, client=self.admin)

    def se_path(self, se: str, lfn: str) -> Path:
        return self.central.se_dirs[se] / lfn.lstrip("/")

    # ---- looking at central -------------------------------------------------------------------

    def call(
        self,
        method: Callable[..., T],
        request: Any,
        retry_for: float = 15.0,
        client: CentralClient | None = None,
    ) -> T:
        """A call that rides out a central restart (the channel reconnects on its own);
        `client` is the stub's client (the user's by default)."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return (client or self.client).call(method, request, timeout=10.0)
            except CentralUnreachableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def jobs(self, project: str = "") -> list[jobs_pb2.JobSummary]:
        selection = jobs_pb2.JobSelection(project=project, owner=OWNER)
        request = jobs_pb2.ListJobsRequest(selection=selection)
        response: jobs_pb2.ListJobsResponse = self.call(self.client.jobs.ListJobs, request)
        return sorted(response.jobs, key=lambda j: j.job_id)

    def statuses(self, project: str = "") -> dict[int, str]:
        return {j.job_id: status_name(j.status) for j in self.jobs(project)}

    def job(self, job_id: int) -> jobs_pb2.GetJobResponse:
        request = jobs_pb2.GetJobRequest(job_id=job_id)
        answer: jobs_pb2.GetJobResponse = self.call(self.client.jobs.GetJob, request)
        return answer

    def history(self, job_id: int) -> list[str]:
        return [status_name(h.status) for h in self.job(job_id).history]

    def replicas(self, lfns: list[str]) -> dict[str, list[str]]:
        """LFN -> SEs holding it, for the LFNs the catalog knows."""
        request = data_pb2.GetReplicasRequest(lfns=lfns)
        answer: data_pb2.GetReplicasResponse = self.call(self.client.data.GetReplicas, request)
        return {f.lfn: [r.se for r in f.replicas] for f in answer.files}

    def catalog_entry(self, lfn: str) -> data_pb2.FileReplicas | None:
        request = data_pb2.GetReplicasRequest(lfns=[lfn])
        answer: data_pb2.GetReplicasResponse = self.call(self.client.data.GetReplicas, request)
        return answer.files[0] if answer.files else None

    def failover_requests(self, job_id: int) -> list[data_pb2.FailoverRequest]:
        request = data_pb2.ListFailoverRequestsRequest(job_id=job_id)
        answer: data_pb2.ListFailoverRequestsResponse = self.call(
            self.client.data.ListFailoverRequests, request
        )
        return list(answer.requests)

    # ---- evidence on disk ---------------------------------------------------------------------

    def job_dirs(self) -> dict[tuple[int, int], list[Path]]:
        """(job id, attempt) -> every job directory any pilot created for it."""
        found: dict[tuple[int, int], list[Path]] = {}
        for path in self.root.glob("**/work/job_*"):
            match = _JOB_DIR.match(path.name)
            if match and path.is_dir():
                found.setdefault((int(match[1]), int(match[2])), []).append(path)
        for path in self.root.glob("hand-pilots/*/job_*"):
            match = _JOB_DIR.match(path.name)
            if match and path.is_dir():
                found.setdefault((int(match[1]), int(match[2])), []).append(path)
        return found

    def describe(self) -> str:
        """The end of every log, for a failing assertion's message."""
        parts = [f"--- central ---\n{tail(self.central.log_path, 60)}"]
        parts += [d.describe() for d in self.directors]
        parts += [p.describe() for p in self.pilots]
        for (job_id, attempt), dirs in sorted(self.job_dirs().items()):
            for job_dir in dirs:
                parts.append(
                    f"--- job {job_id} attempt {attempt} in {job_dir} ---\n"
                    f"{tail(job_dir / 'wrapper.log', 25)}"
                )
        return "\n".join(parts)

    def wait(self, probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
        """Poll `probe` until it returns something truthy; on timeout fail with every log."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n{self.describe()}"
                )
            time.sleep(0.1)

    def wait_statuses(
        self, job_ids: list[int], wanted: set[str], *, timeout: float, what: str = ""
    ) -> dict[int, str]:
        def probe() -> dict[int, str] | None:
            current = self.statuses()
            picked = {i: current.get(i, "?") for i in job_ids}
            return picked if all(s in wanted for s in picked.values()) else None

        return self.wait(
            probe, timeout=timeout, what=what or f"jobs {job_ids} to be {'/'.join(sorted(wanted))}"
        )


@contextlib.contextmanager
def e2e_grid(
    root: Path, central: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None
) -> Iterator[Grid]:
    grid = Grid(root, central or {}, config)
    try:
        grid.start()
        yield grid
    finally:
        grid.close()


__all__ = [
    "FAILOVER_SE",
    "OWNER",
    "SITE_A",
    "SITE_B",
    "CliResult",
    "Grid",
    "Site",
    "e2e_grid",
    "status_name",
]
