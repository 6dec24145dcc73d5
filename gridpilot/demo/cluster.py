"""The demo's processes and files: central, two site directors, three SEs.

Everything lives under one temporary root and every process is started here and stopped by PID.
Every connection is TLS with tokens (gridpilot/demo/security.py): the user logs in with
gb2_proxy_init and a client certificate, the directors use site_director tokens, and the
demo's own reads (catalog, failover requests) use an operator token.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import subprocess
import sys
import time
from types import TracebackType

import psutil
import tomli_w
from rich.console import Console

from central.process import read_port_file
from gridpilot.checksum import adler32_of_bytes
from gridpilot.client import CentralClient
from gridpilot.client_settings import ClientSettings
from gridpilot.demo.layout import (
    DATASET_LPN,
    OUTAGE_SE,
    SE_NAMES,
    SITES,
    DemoLayout,
    central_config,
    director_config,
    short_name,
)
from gridpilot.demo.release import create_release, setup_template
from gridpilot.demo.security import DemoPki, OfflineMinter
from gridpilot.demo.storage import create_storage
from gridpilot.processes import stop_child
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import data_pb2, jobs_pb2
from wrapper.se import open_storage

__all__ = ["OUTAGE_SE", "DemoCluster", "DemoLayout"]

START_TIMEOUT = 30.0


class DemoCluster:
    def __init__(self, layout: DemoLayout, console: Console, storage_kind: str) -> None:
        self.layout = layout
        self.console = console
        self.storage = create_storage(storage_kind, layout.se_root, SE_NAMES)
        self.user = getpass.getuser()
        self.pki = DemoPki.create(layout.root, self.user)
        self.target = ""
        self.login_target = ""
        self._minter: OfflineMinter | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._client: CentralClient | None = None

    def __enter__(self) -> DemoCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bring_se_online(OUTAGE_SE)
        self.stop_pilots_and_directors()
        self._stop("central")
        if self._client is not None:
            self._client.close()
        self.storage.close()

    # ---- processes ----

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
        env.update(self.pki.cli_environment(self.target, self.login_target))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.layout.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(),
            cwd=self.layout.root,
            start_new_session=True,
        )
        log.close()
        self._procs[name] = proc
        return proc

    def _stop(self, name: str, grace: float = 10.0) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            stop_child(proc, grace)

    def start_central(self) -> None:
        config = central_config(
            self.layout, self.pki, {name: self.storage.url(name) for name in SE_NAMES}
        )
        config_path = self.layout.root / "central.toml"
        config_path.write_text(tomli_w.dumps(config))
        port_file = self.layout.root / "central.addr"
        proc = self._spawn(
            "central",
            ["-m", "central", "serve", "--config", str(config_path), "--port-file", str(port_file)],
        )
        deadline = time.monotonic() + START_TIMEOUT
        while (addresses := read_port_file(port_file)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"central did not start; see {self.layout.logs}/central.log")
            time.sleep(0.1)
        self.target, self.login_target = addresses
        self._minter = OfflineMinter(self.layout.central_data)
        settings = ClientSettings(
            central=self.target,
            token=self._minter.operator_token(),
            tls=ClientTls(ca=self.pki.ca_cert),
            user=self.user,
            group="belle_user",
        )
        self._client = CentralClient(settings).__enter__()
        self.console.print(
            f"central listening on {self.target} (TLS; certificate login on {self.login_target})"
        )

    def log_in(self) -> None:
        """The user's login, as they would type it: gb2_proxy_init with their certificate."""
        code = self.run_cli("gb2_proxy_init", ["-g", "belle_user"])
        if code != 0:
            raise RuntimeError(
                f"gb2_proxy_init failed (exit {code}); see {self.layout.logs}/cli.log"
            )
        self.console.print(
            f"logged in as {self.user} (belle_user) with gb2_proxy_init and a client "
            f"certificate; token in {self.pki.user_token_file}"
        )

    def start_site_directors(self) -> None:
        create_release(self.layout.releases, "release-08-00-00")
        setup = setup_template(self.layout.releases)
        if self._minter is None:
            raise RuntimeError("central is not started")
        for site, _se in SITES.items():
            short = short_name(site)
            name = f"sd-{short}"
            token_file = self._minter.director_token(
                name, [site], self.pki.director_token_file(name)
            )
            config = director_config(
                self.layout,
                site,
                name=name,
                central=self.target,
                ca=self.pki.ca_cert,
                token_file=token_file,
                software_setup=setup,
            )
            path = self.layout.root / f"director-{short}.toml"
            path.write_text(tomli_w.dumps(config))
            self._spawn(f"director-{short}", ["-m", "sitedirectors", "--config", str(path)])
        self.console.print(
            f"started site directors for {', '.join(SITES)} (site_director tokens; each pilot "
            "gets a single-use registration token)"
        )

    def stop_pilots_and_directors(self) -> None:
        """Stop the directors, then any pilot they left running (pilots end by idle timeout)."""
        pilots: list[psutil.Process] = []
        for name in [n for n in self._procs if n.startswith("director-")]:
            proc = self._procs[name]
            with contextlib.suppress(psutil.NoSuchProcess):
                pilots += psutil.Process(proc.pid).children(recursive=True)
            self._stop(name)
        for pilot in pilots:
            try:
                pilot.terminate()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(pilots, timeout=10)

    # ---- the CLI, as a user runs it ----

    def run_cli(self, module_main: str, args: list[str], timeout: float = 120.0) -> int:
        module, _, func = _CLI[module_main].partition(":")
        code = f"import sys; from {module} import {func}; sys.exit({func}(sys.argv[1:]))"
        log = (self.layout.logs / "cli.log").open("ab")
        try:
            result = subprocess.run(
                [sys.executable, "-c", code, *args],
                env=self._env(),
                cwd=self.layout.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        finally:
            log.close()
        return result.returncode

    def submit_project(
        self, project: str, release: str, dataset: str, seconds_per_job: float
    ) -> list[int]:
        steering = self.layout.root / "steering.py"
        steering.write_text(
            "# A basf2 steering file (run by the demo's stand-in basf2)\n"
            "import basf2\n"
            "main = basf2.create_path()\n"
            "main.add_module('RootInput')\n"
            "main.add_module('RootOutput', outputFileName='output.root')\n"
            "basf2.process(main)\n"
        )
        code = self.run_cli(
            "gbasf2",
            [
                str(steering),
                "-p",
                project,
                "-s",
                release,
                "-i",
                dataset,
                "--basf2opt",
                f"--standin-seconds {seconds_per_job}",
                "--force",
            ],
        )
        if code != 0:
            raise RuntimeError(f"gbasf2 failed (exit {code}); see {self.layout.logs}/cli.log")
        return sorted(j.job_id for j in self.list_jobs(project))

    # ---- central, read directly ----

    @property
    def client(self) -> CentralClient:
        if self._client is None:
            raise RuntimeError("central is not started")
        return self._client

    def list_jobs(self, project: str) -> list[jobs_pb2.JobSummary]:
        request = jobs_pb2.ListJobsRequest(selection=jobs_pb2.JobSelection(project=project))
        return list(self.client.call(self.client.jobs.ListJobs, request).jobs)

    def failover_requests(self) -> list[data_pb2.FailoverRequest]:
        request = data_pb2.ListFailoverRequestsRequest()
        return list(self.client.call(self.client.data.ListFailoverRequests, request).requests)

    def list_dataset(self, lpn: str) -> list[data_pb2.FileReplicas]:
        request = data_pb2.ListDatasetRequest(lpn=lpn)
        return list(self.client.call(self.client.data.ListDataset, request).files)

    def register_dataset(self, n_files: int) -> str:
        """Write n input files to both sites' SEs and register them in the catalog."""
        registrations = []
        ses = {se: open_storage(self.storage.url(se)) for se in SITES.values()}
        local = self.layout.root / "mdst.root"
        try:
            for i in range(1, n_files + 1):
                lfn = f"{DATASET_LPN}/mdst_{i:06d}.root"
                content = (f"demo mdst file {i}\n".encode()) * (2000 + 37 * i)
                local.write_bytes(content)
                for se, storage in ses.items():
                    storage.upload(local, lfn)
                    registrations.append(
                        data_pb2.ReplicaRegistration(
                            lfn=lfn, se=se, size=len(content), adler32=adler32_of_bytes(content)
                        )
                    )
        finally:
            local.unlink(missing_ok=True)
            for storage in ses.values():
                storage.close()
        request = data_pb2.RegisterReplicasRequest(replicas=registrations)
        self.client.call(self.client.data.RegisterReplicas, request)
        self.console.print(f"registered dataset {DATASET_LPN}: {n_files} files at both sites")
        return DATASET_LPN

    # ---- the SE outage ----

    def take_se_offline(self, name: str) -> None:
        """A real outage (a stopped server, or a directory gone): every access fails."""
        self.storage.take_offline(name)
        self.console.print(f"[yellow]{name} is down: reads and writes fail from now on[/]")

    def se_is_offline(self, name: str) -> bool:
        return self.storage.is_offline(name)

    def bring_se_online(self, name: str) -> None:
        if self.storage.is_offline(name):
            self.storage.bring_online(name)
            self.console.print(f"[green]{name} is back[/]")


_CLI = {
    "gb2_proxy_init": "gridpilot.cli.proxy:proxy_init_main",
    "gbasf2": "gridpilot.cli.gbasf2:main",
    "gb2_job_kill": "gridpilot.cli.gb2_jobs:job_kill_main",
    "gb2_ds_get": "gridpilot.cli.gb2_ds:ds_get_main",
}
