"""A real nginx WebDAV server over TLS for the davs:// plugin's tests, on 127.0.0.1 and a free
port.

    with running_webdav(directory, token="s3cret") as server:
        server.url               # davs://127.0.0.1:PORT/se
        server.ca_file           # the test CA that signed its certificate
        server.data_path(lfn)    # where an LFN of `url` lies on disk

Debian's nginx-light with the dav_ext module (PROPFIND, OPTIONS); see /work/shared/BACKENDS.md
"WebDAV / HTTPS storage elements". Everything (configuration, certificate, pid file, logs, temp
paths, data) lives under `directory`; nginx runs in the foreground (`daemon off`) as this
process's child and is stopped by its PID. Started as root, nginx's workers run as www-data,
as on a real server: `directory` must then be traversable by www-data, so make it with
`tempfile.mkdtemp(dir="/tmp")` (pytest's own temporary directories are 0700).

Besides the SE itself (`/se`), the server has locations that behave like other WebDAV servers
(`location_url(name)`):
- `strict`: `create_full_put_path off`, and a PUT into a missing collection answers 409
  Conflict as RFC 4918 servers do (nginx itself answers 500 there: a `map` and
  `if (!-d ...)` give the 409);
- `nomove`: no COPY/MOVE (405), though OPTIONS still advertises them;
- `digest`: answers a request carrying `Want-Digest: adler32` with `Digest: adler32=<DIGEST>`,
  a fixed value, as XRootD's HTTP and dCache answer with the real one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.support.backends import require_debian_backend
from tests.support.pki import TestPki
from tests.support.sshd import free_port

NGINX = "/usr/sbin/nginx"
DAV_EXT_PACKAGE = "libnginx-mod-http-dav-ext"
DAV_EXT_MODULE = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"
PACKAGES = ("nginx-light", DAV_EXT_PACKAGE)
LOCATIONS = ("se", "strict", "nomove", "digest")
DIGEST = "0123abcd"
WORKER_USER = "www-data"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def dav_ext_module() -> Path | None:
    """The dav_ext module's .so, as its package installed it."""
    done = subprocess.run(
        ["dpkg", "-L", DAV_EXT_PACKAGE], capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        if line.endswith("/ngx_http_dav_ext_module.so") and Path(line).is_file():
            return Path(line)
    return Path(DAV_EXT_MODULE) if Path(DAV_EXT_MODULE).is_file() else None


def webdav_available() -> bool:
    return os.access(NGINX, os.X_OK) and dav_ext_module() is not None


def require_webdav() -> None:
    require_debian_backend(
        "nginx with the WebDAV extension module",
        PACKAGES,
        (NGINX, DAV_EXT_MODULE),
        webdav_available,
    )


def _worker_user() -> str | None:
    """www-data when nginx starts as root (root when that account is missing); None when
    not root, as nginx then cannot change user and its workers run as this user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(WORKER_USER)
    except KeyError:
        return "root"
    return WORKER_USER


class WebdavServer:
    """One nginx WebDAV server; `stop()` and `start()` keep its port, certificate and data."""

    def __init__(self, directory: Path, *, token: str | None = None) -> None:
        # The token goes into nginx.conf inside quotes, where `$` would start a variable.
        if token is not None and not re.fullmatch(r"[\w.~+/=-]+", token):
            raise ValueError("a test token must be made of [A-Za-z0-9._~+/=-] (token68)")
        self.directory = directory
        self.token = token
        self.port = free_port()
        self.host = "127.0.0.1"
        self.data = directory / "data"
        self.root = self.data / "se"
        self.conf = directory / "nginx.conf"
        self.error_log = directory / "error.log"
        self.access_log = directory / "access.log"
        self.output = directory / "nginx.out"
        self.pki = TestPki(directory / "pki")
        self.ca_file = self.pki.ca_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepare()

    @property
    def url(self) -> str:
        return self.location_url("se")

    def location_url(self, name: str, scheme: str = "davs") -> str:
        """Base URL of one of LOCATIONS, by `scheme` (davs or https)."""
        if name not in LOCATIONS:
            raise ValueError(f"no location {name!r} (known: {', '.join(LOCATIONS)})")
        return f"{scheme}://{self.host}:{self.port}/{name}"

    def data_path(self, lfn: str, location: str = "se") -> Path:
        """The file on disk behind `lfn` of the location's base URL."""
        return self.data / location / lfn.lstrip("/")

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the WebDAV server is not running")
        return self._proc.pid

    def requests(self, containing: str = "", *, at_least: int = 0) -> list[tuple[str, str, int]]:
        """(method, request URI, status) of the requests served so far whose URI contains
        `containing`, oldest first. nginx logs a request just after answering it, so this
        waits (boundedly) until there are `at_least` of them."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            found = []
            with contextlib.suppress(FileNotFoundError):
                for line in self.access_log.read_text(errors="replace").splitlines():
                    method, uri, status = line.split(" ")
                    if containing in uri:
                        found.append((method, uri, int(status)))
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for path in (self.output, self.error_log):
            with contextlib.suppress(FileNotFoundError):
                parts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(parts)

    def _prepare(self) -> None:
        self.directory.chmod(0o755)
        user = _worker_user()
        if user not in (None, "root"):
            for parent in self.directory.parents:
                if not parent.stat().st_mode & 0o001:
                    raise RuntimeError(
                        f"nginx's workers ({user}) cannot enter {parent}: make the server's "
                        'directory with tempfile.mkdtemp(dir="/tmp")'
                    )
        # nginx creates the last level of its temp paths only.
        (self.directory / "tmp").mkdir(exist_ok=True)
        for name in LOCATIONS:
            (self.data / name).mkdir(parents=True, exist_ok=True)
        for path in (self.data, *(self.data / name for name in LOCATIONS)):
            if user is not None:
                shutil.chown(path, user, user)
        module = dav_ext_module()
        if module is None:
            raise RuntimeError(f"the nginx dav_ext module is missing (install {DAV_EXT_PACKAGE})")
        self.conf.write_text(_nginx_conf(self, module, user))

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"the WebDAV server already runs as pid {self._proc.pid}")
        d = self.directory
        with self.output.open("ab") as out:
            self._proc = subprocess.Popen(
                [NGINX, "-p", str(d), "-e", str(self.error_log), "-c", str(self.conf),
                 "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )  # fmt: skip
        try:
            self._wait_for_port()
        except BaseException:
            self.stop()
            raise

    def _wait_for_port(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._proc.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not listen on port {self.port} within {START_TIMEOUT} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM nginx's master by its PID (it ends its workers); SIGKILL all of them
        after STOP_TIMEOUT."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            workers = psutil.Process(proc.pid).children()
        except psutil.Error:
            workers = []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        _gone, alive = psutil.wait_procs(workers, timeout=STOP_TIMEOUT)
        for worker in alive:
            with contextlib.suppress(psutil.Error):
                worker.kill()


def _nginx_conf(server: WebdavServer, module: Path, user: str | None) -> str:
    d = server.directory
    token_check = (
        f'if ($http_authorization != "Bearer {server.token}") {{ return 401; }}'
        if server.token
        else "# no token required"
    )
    temp_paths = "\n".join(
        f"    {kind}_temp_path {d / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
load_module {module};
{f"user {user};" if user else "# not root: workers run as this user"}
worker_processes 1;
pid {d / "nginx.pid"};
error_log {server.error_log} warn;
events {{ worker_connections 64; }}
http {{
    log_format gridpilot '$request_method $request_uri $status';
    access_log {server.access_log} gridpilot;
{temp_paths}
    types {{ }}
    default_type application/octet-stream;
    server_tokens off;
    map $http_want_digest $gridpilot_digest {{ "~*adler32" "adler32={DIGEST}"; default ""; }}
    map $request_method:$uri $strict_put_parent {{ "~^PUT:(/strict/.*/)[^/]+$" $1; default /; }}
    server {{
        listen {server.host}:{server.port} ssl;
        ssl_certificate {server.pki.server_cert};
        ssl_certificate_key {server.pki.server_key};
        root {server.data};
        client_max_body_size 0;
        dav_methods PUT DELETE MKCOL COPY MOVE;
        dav_ext_methods PROPFIND OPTIONS;
        dav_access user:rw group:r all:r;
        create_full_put_path on;
        {token_check}
        location /se/ {{ }}
        location /strict/ {{
            create_full_put_path off;
            if (!-d $document_root$strict_put_parent) {{ return 409; }}
        }}
        location /nomove/ {{ dav_methods PUT DELETE MKCOL; }}
        location /digest/ {{ add_header Digest $gridpilot_digest; }}
    }}
}}
"""


@contextlib.contextmanager
def running_webdav(
    directory: Path | None = None, *, token: str | None = None
) -> Iterator[WebdavServer]:
    """A started server in a fresh private directory (made under `directory`, default /tmp:
    nginx's workers must be able to enter it, which pytest's 0700 directories forbid),
    refusing requests without `Authorization: Bearer <token>` when `token` is given; stopped
    and removed afterwards."""
    require_webdav()
    root = Path(tempfile.mkdtemp(prefix="gridpilot-webdav-", dir=directory or "/tmp"))
    try:
        server = WebdavServer(root, token=token)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
