"""The arc backend against a real A-REX (fork LRMS, REST 1.0): the conformance suite, then
what only an ARC CE has (multi-job submission, refusals, status lag, jobs A-REX forgot) and
the token's path."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from central.models.pilot_states import PilotState
from sitedirectors.arc import ArcBackend, create_arc_backend
from sitedirectors.arc_options import ArcOptions, convert_options
from sitedirectors.arc_rest import ArcRest
from sitedirectors.base import (
    Backend,
    BackendConfigError,
    BackendContext,
    BackendError,
    PilotLaunch,
    SubmitOutcome,
    SubmitRequest,
)
from sitedirectors.bundle import PilotBundle
from tests.sitedirectors import conformance
from tests.sitedirectors.conformance import (
    QUEUE,
    TOKEN_PROBE,
    BackendConformance,
    LaunchFactory,
    is_final,
    submit,
    wait_status,
)
from tests.support.arc import ArcCe, free_port
from tests.support.bundle import NODE_PYTHON, echo_bundle
from tests.support.pki import TestPki

# A-REX's status lags by up to its information provider's period (5 s here) and sees a job
# end up to ~20 s late: every wait of the suite gets this long instead of its own.
# One A-REX for all of them: every ARC test runs on the same test worker.
pytestmark = pytest.mark.xdist_group("arc")

ARC_WAIT = 90.0
STATUS_LAG = 5.0
VANISH_GRACE = 2.0


def python_launch(pilot_id: str, code: str, **fields: Any) -> PilotLaunch:
    """A 'pilot' that is Debian's python3 running `code` (jobs run as the mapped account,
    which cannot use this test's interpreter)."""
    return PilotLaunch(pilot_id, (str(NODE_PYTHON), "-c", code), **fields)


def make_backend(
    ce: ArcCe,
    state_dir: Path,
    bundle: PilotBundle | None = None,
    rest_hook: Callable[[httpx.Request], None] | None = None,
    **options: Any,
) -> ArcBackend:
    settings = ce.options(**{"status_lag": STATUS_LAG, "vanish_grace": VANISH_GRACE, **options})
    converted = convert_options(settings, "q")
    rest = ArcRest(converted, on_request=rest_hook)
    return ArcBackend(converted, state_dir, bundle, rest=rest)


def wait(backend: Backend, ref: str, until: Callable[[Any], bool]) -> Any:
    return wait_status(backend, ref, until, timeout=ARC_WAIT)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "arc"


@pytest.fixture
def backend(arc: ArcCe, state_dir: Path) -> Iterator[ArcBackend]:
    instance = make_backend(arc, state_dir)
    yield instance
    instance.close()


class TestArcConformance(BackendConformance):
    @pytest.fixture(autouse=True)
    def _arc_waits(self, arc: ArcCe, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ce = arc
        original = conformance.wait_status

        def patient(backend: Backend, ref: str, until: Any, timeout: float = 15.0) -> Any:
            return original(backend, ref, until, timeout=max(timeout, ARC_WAIT))

        monkeypatch.setattr(conformance, "wait_status", patient)

    @pytest.fixture
    def restarted_backend(self, arc: ArcCe, state_dir: Path) -> Callable[[], Backend]:
        return lambda: make_backend(arc, state_dir)

    @pytest.fixture
    def launch_factory(self) -> LaunchFactory:
        return python_launch

    def vanish(self, reference: str) -> None:
        # A-REX loses the job's control files: it answers "not found" from then on.
        self.ce.forget_job(reference)

    def test_running_then_done(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        """As the suite's, but an ARC job is Submitted first (inputs, A-REX's queue)."""
        ref = self.submit_one(
            backend, launch_factory, "import time; time.sleep(8); print('pilot says hello')"
        )
        first = backend.status([ref])[ref]
        assert first.state in (PilotState.SUBMITTED, PilotState.RUNNING), first
        wait(backend, ref, lambda s: s.state is PilotState.RUNNING)
        done = wait(backend, ref, is_final)
        assert done.state is PilotState.DONE, done
        assert done.exit_code == 0
        assert "pilot says hello" in backend.fetch_output(ref)


# ---- several pilots, one request ------------------------------------------------------------


class Recorder:
    """What the backend sent: method, URL and (for bodies in memory) the body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = b""  # a streamed upload (the bundle)
        self.requests.append((request.method, str(request.url), body))
        self.headers.append(dict(request.headers))

    def posts(self, action: str) -> list[bytes]:
        return [b for m, u, b in self.requests if m == "POST" and f"action={action}" in u]


def test_several_pilots_are_one_submission(arc: ArcCe, state_dir: Path) -> None:
    recorder = Recorder()
    backend = make_backend(arc, state_dir, rest_hook=recorder)
    code = "import os; print('pilot in', os.getcwd())"
    refs = submit(backend, *(python_launch(uuid.uuid4().hex, code) for _ in range(3)))
    [body] = recorder.posts("new")
    assert body.startswith(b"+(&")
    assert body.count(b"(&(executable=") == 3
    assert len(set(refs)) == 3
    for ref in refs:
        assert wait(backend, ref, is_final).state is PilotState.DONE
        assert f"pilot in {arc.session_dir}/{ref}/work" in backend.fetch_output(ref)
    # In chunks when asked to.
    small = make_backend(arc, state_dir, rest_hook=recorder, max_jobs_per_request=2)
    submit(small, *(python_launch(uuid.uuid4().hex, "pass") for _ in range(3)))
    assert len(recorder.posts("new")) == 3


# ---- refusals and unreachable CEs --------------------------------------------------------------


def test_refused_credentials_fail_permanently_naming_the_ce(
    arc: ArcCe, state_dir: Path, tmp_path: Path
) -> None:
    stranger = make_backend(
        arc, state_dir, cert_file=str(arc.stranger.cert), key_file=str(arc.stranger.key)
    )
    [result] = stranger.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert arc.endpoint in result.error
    assert "403" in result.error
    assert "credentials refused" in result.error
    with pytest.raises(BackendError, match="403"):
        stranger.status(["abcdefgh1234"])
    token = tmp_path / "token"
    token.write_text("not-a-token-" + uuid.uuid4().hex)
    token_backend = make_backend(arc, state_dir, cert_file="", key_file="", token_file=str(token))
    [result] = token_backend.submit(SubmitRequest(QUEUE, (python_launch("p2", "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "credentials refused" in result.error
    assert token.read_text() not in result.error


def test_token_file_is_read_again_when_it_changes(
    arc: ArcCe, state_dir: Path, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    recorder = Recorder()
    backend = make_backend(
        arc, state_dir, rest_hook=recorder, cert_file="", key_file="", token_file=str(token)
    )
    with pytest.raises(BackendError):
        backend.status(["abcdefgh1234"])
    token.write_text("second-token-longer\n")
    with pytest.raises(BackendError):
        backend.status(["abcdefgh1234"])
    sent = [h.get("authorization") for h in recorder.headers]
    assert sent == ["Bearer first-token", "Bearer second-token-longer"]


def test_untrusted_ce_certificate_is_a_permanent_failure(
    arc: ArcCe, state_dir: Path, tmp_path: Path
) -> None:
    other_ca = TestPki(tmp_path / "pki").other_ca
    backend = make_backend(arc, state_dir, ca_file=str(other_ca))
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert arc.endpoint in result.error
    assert "TLS" in result.error


def test_unreachable_endpoint_is_retried(arc: ArcCe, state_dir: Path) -> None:
    dead = f"https://localhost:{free_port()}/arex"
    backend = make_backend(arc, state_dir, endpoint=dead)
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
    assert result.outcome is SubmitOutcome.RETRY
    assert dead in result.error
    with pytest.raises(BackendError, match=dead):
        backend.status(["abcdefgh1234"])


def test_wrong_endpoint_path_is_a_permanent_failure(arc: ArcCe, state_dir: Path) -> None:
    wrong = f"https://localhost:{arc.port}/nosuch"
    backend = make_backend(arc, state_dir, endpoint=wrong)
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch("p1", "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert wrong in result.error
    assert "404" in result.error


def test_bad_queue_is_a_permanent_failure_leaving_nothing(arc: ArcCe, state_dir: Path) -> None:
    backend = make_backend(arc, state_dir, queue="nosuch")
    launches = tuple(python_launch(uuid.uuid4().hex, "pass") for _ in range(2))
    results = backend.submit(SubmitRequest(QUEUE, launches))
    assert [r.outcome for r in results] == [SubmitOutcome.FAILED] * 2
    assert "Requested queue nosuch is not allowed" in results[0].error
    assert arc.endpoint in results[0].error
    assert not (state_dir / "references").exists()


def test_no_bundle_and_no_command_and_unsafe_ids_fail(backend: ArcBackend) -> None:
    results = backend.submit(
        SubmitRequest(QUEUE, (PilotLaunch(uuid.uuid4().hex), python_launch("../x", "pass")))
    )
    assert [r.outcome for r in results] == [SubmitOutcome.FAILED] * 2
    assert "no pilot bundle" in results[0].error
    assert "unsafe pilot id" in results[1].error


# ---- status lag and jobs the CE forgot -----------------------------------------------------------


def test_status_lag_is_not_taken_for_an_end(arc: ArcCe, state_dir: Path) -> None:
    """A just-submitted job is Submitted (whatever A-REX's status file still says); one the
    CE does not show is Submitted while younger than status_lag, then Unknown, and Aborted
    as vanished only after vanish_grace."""
    backend = make_backend(arc, state_dir, status_lag=25.0, vanish_grace=3.0)
    kept, forgotten = submit(
        backend,
        python_launch(uuid.uuid4().hex, "import time; time.sleep(5)"),
        python_launch(uuid.uuid4().hex, "import time; time.sleep(60)"),
    )
    first = backend.status([kept, forgotten])
    assert {s.state for s in first.values()} <= {PilotState.SUBMITTED, PilotState.RUNNING}
    # Forgotten once it runs (A-REX fails a job it is still preparing whose files vanish).
    wait_status(backend, forgotten, lambda s: s.state is PilotState.RUNNING, timeout=20)
    arc.forget_job(forgotten)
    lagging = backend.status([forgotten])[forgotten]
    assert lagging.state is PilotState.SUBMITTED, lagging
    assert "lags" in lagging.reason
    seen = [lagging.state]

    def ended(status: Any) -> bool:
        seen.append(status.state)
        return is_final(status)

    gone = wait_status(backend, forgotten, ended, timeout=60)
    assert gone.state is PilotState.ABORTED
    assert "vanished" in gone.reason
    assert PilotState.UNKNOWN in seen
    assert wait(backend, kept, is_final).state is PilotState.DONE


def test_cleanup_forgets_records_and_logs(backend: ArcBackend, state_dir: Path) -> None:
    [ref] = submit(backend, python_launch(uuid.uuid4().hex, "print('bye')"))
    wait(backend, ref, is_final)
    assert json.loads((state_dir / "references" / ref).read_text())["final_state"] == "FINISHED"
    backend.cleanup([ref])
    assert not (state_dir / "references" / ref).exists()
    assert backend.status([ref])[ref].state is PilotState.UNKNOWN
    # A-REX removes the job (and its log) once it gets to the clean request.
    deadline = time.monotonic() + 30
    while not _log_gone(backend, ref):
        assert time.monotonic() < deadline, "the job's log outlived its cleanup"
        time.sleep(0.5)


def _log_gone(backend: ArcBackend, ref: str) -> bool:
    try:
        backend.fetch_output(ref)
    except BackendError as exc:
        return "404" in str(exc)
    return False


# ---- the token's path --------------------------------------------------------------------------


def test_token_travels_only_in_its_own_upload(arc: ArcCe, state_dir: Path, tmp_path: Path) -> None:
    """Never in the xRSL, a URL, the job's environment or command line; in a file only the
    mapped account can read."""
    token = "registration-token-" + uuid.uuid4().hex
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    recorder = Recorder()
    backend = make_backend(arc, state_dir, rest_hook=recorder)
    [ref] = submit(
        backend, python_launch(uuid.uuid4().hex, TOKEN_PROBE, registration_token=token, ca=ca)
    )
    assert wait(backend, ref, is_final).state is PilotState.DONE
    info = json.loads(backend.fetch_output(ref))
    session = f"{arc.session_dir}/{ref}"
    assert info["argv"] == [
        "--token-file", f"{session}/registration.token",
        "--ca", f"{session}/ca.pem",
        "--work-dir", f"{session}/work",
    ]  # fmt: skip
    assert info["token"] == token
    assert (info["mode"], info["dir_mode"]) == (0o600, 0o700)
    assert info["ca"] == ca.read_text()
    assert token not in info["cmdline"]
    assert token not in json.dumps(info["environ"])
    carrying = [(m, u) for m, u, body in recorder.requests if token.encode() in body]
    assert carrying == [("PUT", f"{arc.endpoint}/rest/1.0/jobs/{ref}/session/registration.token")]
    assert not [u for _, u, _ in recorder.requests if token in u]
    assert all(token.encode() not in body for body in recorder.posts("new"))


# ---- the pilot bundle --------------------------------------------------------------------------


def test_bundle_is_uploaded_checked_and_runs_the_pilot(
    arc: ArcCe, state_dir: Path, tmp_path: Path
) -> None:
    bundle = echo_bundle(tmp_path / "bundle")
    backend = make_backend(arc, state_dir, bundle=bundle)
    [ref] = submit(backend, PilotLaunch(uuid.uuid4().hex, arguments=("--site", "X")))
    assert wait(backend, ref, is_final).state is PilotState.DONE
    output = backend.fetch_output(ref)
    session = f"{arc.session_dir}/{ref}"
    assert f"launcher from {session}/bundle-cache/{bundle.sha256}" in output
    assert f"--site X --work-dir {session}/work" in output


class _FileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files also when asked by absolute URI (`GET http://host:port/file`), as
    ARC's data staging does."""

    def translate_path(self, path: str) -> str:
        if "://" in path:
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 for `directory`; its base URL."""
    handler = functools.partial(_FileHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bundle_url_is_fetched_by_the_ce(arc: ArcCe, state_dir: Path, tmp_path: Path) -> None:
    bundle = echo_bundle(tmp_path / "bundle")
    recorder = Recorder()
    with serving(bundle.path.parent) as base:
        url = f"{base}/{bundle.path.name}"
        backend = make_backend(arc, state_dir, bundle=bundle, rest_hook=recorder, bundle_url=url)
        [ref] = submit(backend, PilotLaunch(uuid.uuid4().hex))
        done = wait(backend, ref, is_final)
    assert done.state is PilotState.DONE, (done, backend.fetch_output(ref))
    assert f"launcher from {arc.session_dir}/{ref}/bundle-cache/" in backend.fetch_output(ref)
    assert url.encode() in recorder.posts("new")[0]
    assert not [u for m, u, _ in recorder.requests if m == "PUT" and bundle.file_name in u]


# ---- options -----------------------------------------------------------------------------------


def test_factory_defaults(arc_ce: ArcCe, tmp_path: Path) -> None:
    backend = create_arc_backend(BackendContext("q", tmp_path, arc_ce.options()))
    assert isinstance(backend, ArcBackend)
    assert backend.state_dir == tmp_path.resolve() / "arc"
    assert backend.options.status_lag >= 120
    assert backend.rest.base == f"{arc_ce.endpoint}/rest/1.0"
    backend.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, r"queues\[q\]\.backend_options.*bogus"),
        ({"endpoint": None}, r"endpoint"),
        ({"endpoint": "http://ce:8443/arex"}, r"backend_options\.endpoint must be an https://"),
        ({"endpoint": "https://u:p@ce/arex"}, r"endpoint must not carry credentials"),
        ({"cert_file": "", "key_file": ""}, r"a credential is required"),
        ({"key_file": ""}, r"cert_file and key_file go together"),
        ({"token_file": "/etc/hostname"}, r"not both"),
        ({"ca_file": "relative.pem"}, r"backend_options\.ca_file must be an absolute path"),
        ({"ca_dir": "/nonexistent/dir"}, r"backend_options\.ca_dir: /nonexistent/dir does not"),
        ({"walltime": -1}, r"backend_options\.walltime must not be negative"),
        ({"walltime": "long"}, r"walltime"),
        ({"timeout": 0}, r"backend_options\.timeout must be positive"),
        ({"queue": 'x") (executable="evil'}, r"backend_options\.queue is not a valid"),
        ({"runtime_environments": ["ok", "a b"]}, r"runtime_environments: invalid name"),
        ({"bundle_url": "not a url"}, r"backend_options\.bundle_url"),
        ({"max_jobs_per_request": 0}, r"max_jobs_per_request must be at least 1"),
    ],
)
def test_factory_rejects_bad_options(
    arc_ce: ArcCe, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    options = {**arc_ce.options(), **change}
    options = {k: v for k, v in options.items() if v is not None}
    with pytest.raises(BackendConfigError, match=message):
        create_arc_backend(BackendContext("q", tmp_path, options))


def test_options_struct_defaults() -> None:
    options = msgspec.convert({"endpoint": "https://ce/arex"}, ArcOptions)
    assert (options.status_lag, options.vanish_grace, options.walltime) == (180.0, 60.0, 0)
