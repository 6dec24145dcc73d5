"""Cloud APIs for the `cloud` backend's tests: moto's EC2 server and the mimic OpenStack
emulator on 127.0.0.1, each started as this process's child and stopped by its PID.

    with running_moto(directory) as moto:       # moto.endpoint, moto.key_id/secret (IAM-checked)
    with running_mimic(directory) as mimic:     # mimic.auth_url, username/password/tenant

moto (PyPI `moto[ec2]`, `flask`, `flask-cors`) lives in the project's test environment: the
tests also use its boto3 as an independent client (an operator's hands: read a VM's user
data, stop or delete a VM behind the backend's back) and it has no conflicting pins. Its IAM
check is switched on after one user with an access key is made, so wrong credentials are
refused as by AWS. mimic 2.2.0 needs `attrs<24`, which would clash with the project's own
dependencies: it is installed into a virtualenv of its own under the user's cache directory
(`$XDG_CACHE_HOME/gridpilot-tests/`, made once, ~15 s, pip from PyPI), never into the
project's environment. mimic forgets user data (Nova's API does not return it): only the EC2
VMs can be "booted".

`VmBooter` plays the hypervisor for moto's VMs: it runs each new VM's user data as a local
shell script (fetched through the EC2 API, as cloud-init would get it), with a `poweroff` of
its own first on PATH; when the script powers off it stops or terminates the instance the
way the instance's shutdown behaviour says, and it kills the local processes of a VM deleted
through the API.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import http.server
import importlib
import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpilot.processes import stop_child
from tests.support.backends import require_backend
from tests.support.pki import TestPki
from tests.support.sshd import free_port

MIMIC_REQUIREMENTS = ("mimic==2.2.0", "attrs<24")
MOTO_HINT = "pip install 'moto[ec2]>=5.2' flask flask-cors"
EC2_REGION = "us-east-1"
# An image id moto knows (it accepts any, but this one exists in its catalogue).
EC2_IMAGE = "ami-12c6146b"
EC2_FLAVOR = "t3.micro"
# mimic's compute region, service name and one of its flavors (1 vCPU).
MIMIC_REGION = "ORD"
MIMIC_SERVICE = "cloudServersOpenStack"
MIMIC_FLAVOR = "2"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
VENV_TIMEOUT = 600.0


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if isinstance(exc, urllib.error.HTTPError):
                return  # it answers
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not up after {timeout} s: {exc}") from exc
            time.sleep(0.1)


def write_credentials(path: Path, mode: int = 0o600, **fields: str) -> Path:
    """A credentials file as a site admin writes it (TOML, 0600 unless `mode` says)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in fields.items()))
    path.chmod(mode)
    return path


# ---- moto (EC2) --------------------------------------------------------------------------------


def moto_available() -> bool:
    return all(importlib.util.find_spec(name) for name in ("flask", "flask_cors", "moto", "boto3"))


@dataclass
class MotoServer:
    endpoint: str
    key_id: str = ""
    secret: str = field(default="", repr=False)
    region: str = EC2_REGION

    def client(self, service: str = "ec2", *, secret: str | None = None) -> Any:
        # boto3 comes with moto (the test environment only).
        boto3 = importlib.import_module("boto3")
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.key_id or "bootstrap",
            aws_secret_access_key=self.secret if secret is None else secret,
        )

    def instances(self, director: str = "", queue: str = "") -> list[dict[str, Any]]:
        filters = [
            {"Name": f"tag:{key}", "Values": [value]}
            for key, value in (("gridpilot-director", director), ("gridpilot-queue", queue))
            if value
        ]
        reply = self.client().describe_instances(Filters=filters)
        return [i for r in reply["Reservations"] for i in r["Instances"]]

    def user_data(self, instance_id: str) -> str:
        reply = self.client().describe_instance_attribute(
            InstanceId=instance_id, Attribute="userData"
        )
        value = reply.get("UserData", {}).get("Value", "")
        return base64.b64decode(value).decode() if value else ""

    def shutdown_behaviour(self, instance_id: str) -> str:
        reply = self.client().describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
        )
        return str(reply.get("InstanceInitiatedShutdownBehavior", {}).get("Value", "stop"))

    def reset(self) -> None:
        """moto forgets everything (as if the provider lost every VM)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stop(self, instance_id: str) -> None:
        self.client().stop_instances(InstanceIds=[instance_id])

    def terminate(self, instance_id: str) -> None:
        self.client().terminate_instances(InstanceIds=[instance_id])

    def _setup_iam(self) -> None:
        """One IAM user allowed everything, with an access key; then moto checks every
        request's signature and permissions (POST /moto-api/reset-auth 0)."""
        iam = self.client("iam", secret="bootstrap")
        iam.create_user(UserName="director")
        allow_all = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow_all]}
        iam.put_user_policy(
            UserName="director", PolicyName="all", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="director")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


@contextlib.contextmanager
def running_moto(directory: Path, *, iam: bool = True) -> Iterator[MotoServer]:
    """moto's server (EC2, IAM) on 127.0.0.1 and a free port, with IAM checks on (unless
    `iam` is False: then any credentials pass)."""
    require_backend(moto_available(), "moto's EC2 server", MOTO_HINT)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        server = MotoServer(f"http://127.0.0.1:{port}")
        _wait_http(f"{server.endpoint}/moto-api/", START_TIMEOUT, proc, log)
        if iam:
            server._setup_iam()
        else:
            server.key_id, server.secret = "AKIAANYTHING", "anything"
        yield server
    finally:
        stop_child(proc, STOP_TIMEOUT)


def ec2_backend_options(
    moto: MotoServer, tmp_path: Path, director: str, **extra: Any
) -> dict[str, Any]:
    """The cloud backend's options for a queue on this moto EC2 endpoint."""
    creds = write_credentials(tmp_path / "ec2.toml", key_id=moto.key_id, secret=moto.secret)
    return {
        "provider": "ec2",
        "credentials_file": str(creds),
        "endpoint": moto.endpoint,
        "region": moto.region,
        "image": EC2_IMAGE,
        "flavor": EC2_FLAVOR,
        "director": director,
        "vm_dir": str(tmp_path / "vm"),
        # The "VMs" run on this machine as root: no user to create, no firewall rule.
        "pilot_user": "root",
        "block_metadata": False,
        "timeout": 10.0,
        **extra,
    }


# ---- mimic (OpenStack) -------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gridpilot-tests"


def mimic_venv() -> tuple[Path | None, str]:
    """mimic's own virtualenv (made on first use); (its twistd, or None and why not)."""
    venv = cache_dir() / "mimic-2.2.0"
    twistd = venv / "bin" / "twistd"
    done = venv / ".complete"
    if done.is_file() and twistd.is_file():
        return twistd, ""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "mimic.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file() and twistd.is_file():
            return twistd, ""
        shutil.rmtree(venv, ignore_errors=True)
        for argv in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", *MIMIC_REQUIREMENTS],
        ):
            made = subprocess.run(
                argv, capture_output=True, text=True, timeout=VENV_TIMEOUT, check=False
            )
            if made.returncode != 0:
                tail = " ".join((made.stderr or made.stdout).strip().splitlines()[-3:])
                return None, f"{' '.join(argv[:3])} failed: {tail}"
        done.touch()
    return twistd, ""


@dataclass
class MimicServer:
    auth_url: str
    username: str = "gridpilot"
    password: str = field(default="mimic-password", repr=False)
    tenant: str = "belle"
    region: str = MIMIC_REGION

    def token_reply(self) -> dict[str, Any]:
        body = {
            "auth": {
                "passwordCredentials": {"username": self.username, "password": self.password},
                "tenantName": self.tenant,
            }
        }
        request = urllib.request.Request(
            f"{self.auth_url}/v2.0/tokens",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            reply: dict[str, Any] = json.loads(answer.read())
        return reply

    def _endpoint(self, service: str) -> str:
        for entry in self.token_reply()["access"]["serviceCatalog"]:
            if entry["name"] == service:
                for endpoint in entry["endpoints"]:
                    if endpoint["region"] == self.region:
                        return str(endpoint["publicURL"])
        raise LookupError(f"mimic has no {service} in {self.region}")

    def _post(self, url: str, body: Mapping[str, Any]) -> None:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def set_status(self, server_id: str, status: str) -> None:
        """Move a server to a Nova status (ACTIVE, SHUTOFF, ERROR...) through mimic's control
        API, as the hypervisor would."""
        url = f"{self._endpoint('cloudServersBehavior')}/attributes/"
        self._post(url, {"status": {server_id: status}})

    def refuse_logins(self, username_pattern: str) -> None:
        """Keystone answers 401 to these users from now on."""
        behavior = {"criteria": [{"username": username_pattern}], "name": "fail", "parameters": {}}
        root = self.auth_url.rsplit("/identity", 1)[0]
        self._post(f"{root}/mimic/v1.1/IdentityControlAPI/behaviors/auth", behavior)

    def servers(self) -> list[dict[str, Any]]:
        token = self.token_reply()["access"]["token"]["id"]
        request = urllib.request.Request(
            f"{self._endpoint(MIMIC_SERVICE)}/servers/detail", headers={"X-Auth-Token": token}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            servers: list[dict[str, Any]] = json.loads(answer.read())["servers"]
        return servers

    def delete(self, server_id: str) -> None:
        token = self.token_reply()["access"]["token"]["id"]
        request = urllib.request.Request(
            f"{self._endpoint(MIMIC_SERVICE)}/servers/{server_id}",
            method="DELETE",
            headers={"X-Auth-Token": token},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def images(self) -> list[str]:
        token = self.token_reply()["access"]["token"]["id"]
        request = urllib.request.Request(
            f"{self._endpoint(MIMIC_SERVICE)}/images", headers={"X-Auth-Token": token}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return [str(i["id"]) for i in json.loads(answer.read())["images"]]


@contextlib.contextmanager
def running_mimic(directory: Path) -> Iterator[MimicServer]:
    """mimic on 127.0.0.1 and a free port, from its own virtualenv."""
    twistd, problem = mimic_venv()
    require_backend(twistd is not None, "the mimic OpenStack emulator", problem)
    assert twistd is not None
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "mimic.log"
    argv = [str(twistd), "-n", "--pidfile=", f"--logfile={log}", "mimic",
            "--listen", f"tcp:{port}:interface=127.0.0.1"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        server = MimicServer(f"http://127.0.0.1:{port}/identity")
        _wait_http(f"{server.auth_url}/v2.0", START_TIMEOUT, proc, log)
        yield server
    finally:
        stop_child(proc, STOP_TIMEOUT)


# ---- HTTPS file server (the bundle_url) --------------------------------------------------------


@contextlib.contextmanager
def serving_https(directory: Path, pki: TestPki) -> Iterator[str]:
    """The files of `directory` over HTTPS on 127.0.0.1 (certificate from `pki`); yields the
    base URL. Clients trust it with CURL_CA_BUNDLE=pki.ca_path."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


# ---- the hypervisor of moto's VMs --------------------------------------------------------------

POWEROFF_SCRIPT = '#!/bin/sh\necho "$(date +%s)" > "$GRIDPILOT_TEST_VM_DIR/powered-off"\n'


@dataclass
class BootedVm:
    instance_id: str
    directory: Path
    process: subprocess.Popen[bytes]
    powered_off: bool = False
    killed: bool = False

    @property
    def output(self) -> str:
        return (self.directory / "console.log").read_text(errors="replace")


class VmBooter:
    """Boots moto's VMs of one director and queue on this machine (see the module doc).

    `power_off_acts=False` leaves a VM running after its pilot powered off (a hung
    shutdown): then only the director's reconcile deletes it."""

    def __init__(
        self,
        moto: MotoServer,
        root: Path,
        *,
        director: str,
        queue: str = "",
        environment: Mapping[str, str] | None = None,
        power_off_acts: bool = True,
        period: float = 0.2,
    ) -> None:
        self.moto = moto
        self.root = root
        self.director = director
        self.queue = queue
        self.environment = dict(environment or {})
        self.power_off_acts = power_off_acts
        self.period = period
        self.vms: dict[str, BootedVm] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vm-booter", daemon=True)
        self._bin = root / "bin"
        self._bin.mkdir(parents=True, exist_ok=True)
        (self._bin / "poweroff").write_text(POWEROFF_SCRIPT)
        (self._bin / "poweroff").chmod(0o755)

    def __enter__(self) -> VmBooter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for vm in self.vms.values():
            self._kill(vm)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the test reads them; the thread must go on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.period)

    def step(self) -> None:
        instances = {i["InstanceId"]: i for i in self.moto.instances(self.director, self.queue)}
        for instance_id, instance in instances.items():
            state = instance["State"]["Name"]
            vm = self.vms.get(instance_id)
            if vm is None and state in ("pending", "running"):
                self.vms[instance_id] = self._boot(instance_id)
            elif vm is not None and state not in ("pending", "running"):
                self._kill(vm)  # deleted or stopped through the API: the VM is gone
        for vm in self.vms.values():
            if vm.killed or vm.powered_off or vm.process.poll() is None:
                continue
            vm.powered_off = True
            if (vm.directory / "powered-off").exists() and self.power_off_acts:
                if self.moto.shutdown_behaviour(vm.instance_id) == "terminate":
                    self.moto.terminate(vm.instance_id)
                else:
                    self.moto.stop(vm.instance_id)

    def _boot(self, instance_id: str) -> BootedVm:
        directory = self.root / instance_id
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / "user-data"
        script.write_text(self.moto.user_data(instance_id))
        env = {
            **os.environ,
            **self.environment,
            "PATH": f"{self._bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "GRIDPILOT_TEST_VM_DIR": str(directory),
        }
        with (directory / "console.log").open("wb") as console:
            process = subprocess.Popen(
                ["/bin/sh", str(script)],
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=directory,
                start_new_session=True,
            )
        return BootedVm(instance_id, directory, process)

    def _kill(self, vm: BootedVm) -> None:
        if vm.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(vm.process.pid, signal.SIGKILL)
            vm.process.wait(10)
        vm.killed = True
