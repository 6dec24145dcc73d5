"""The htcondorce backend against a real schedd (tests/support/htcondor.py): the conformance
suite, then what only an HTCondor-CE has (transactions of many pilots, refused tokens, an
unreachable collector, holds, its history) and the registration token's path."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest

from central.models.pilot_states import PilotState
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
from sitedirectors.htcondorce import HTCondorCEBackend, create_htcondorce_backend, run_child
from sitedirectors.htcondorce_parse import parse_reference
from sitedirectors.registry import default_registry
from tests.sitedirectors.conformance import (
    QUEUE,
    TOKEN_PROBE,
    BackendConformance,
    LaunchFactory,
    is_final,
    is_running,
    submit,
    wait_status,
)
from tests.support.bundle import echo_bundle
from tests.support.htcondor import DOMAIN, IDENTITY, HTCondorCE
from tests.support.slurm import free_port

# One schedd in the one cached Debian root: every HTCondor test on the same test worker.
pytestmark = pytest.mark.xdist_group("htcondor")

# Short, because the tests make jobs vanish: a job older than this in the CE's history is not
# found any more, and one unseen this long after its submission has vanished.
HISTORY_LOOKBACK = 2.0
VANISH_GRACE = 2.0
# A batch job waits for the negotiator before it runs: more than the suite's default.
START = 30.0
# The scratch directory the startd makes for each job (its EXECUTE directory's dir_<pid>).
SCRATCH = r"/\S+/execute/dir_\d+"


def options_for(ce: HTCondorCE, **options: Any) -> dict[str, Any]:
    return {
        "collector": ce.collector,
        "schedd": ce.schedd,
        "token_file": str(ce.token_file),
        "vanish_grace": VANISH_GRACE,
        "history_lookback": HISTORY_LOOKBACK,
        "timeout": 30.0,
        **options,
    }


def make_backend(
    ce: HTCondorCE, work_dir: Path, bundle: PilotBundle | None = None, **options: Any
) -> HTCondorCEBackend:
    context = BackendContext("test-queue", work_dir, options_for(ce, **options), bundle=bundle)
    backend = create_htcondorce_backend(context)
    assert isinstance(backend, HTCondorCEBackend)
    return backend


@pytest.fixture
def backend(ce: HTCondorCE, tmp_path: Path) -> Iterator[HTCondorCEBackend]:
    instance = make_backend(ce, tmp_path)
    yield instance
    instance.close()


def node_launch(ce: HTCondorCE) -> LaunchFactory:
    """A pilot that is a small program run by the worker node's Python (inside the root)."""

    def launch(pilot_id: str, code: str) -> PilotLaunch:
        return PilotLaunch(pilot_id, (ce.python, "-c", code), environment={"GRIDPILOT_TEST": "1"})

    return launch


def job_of(reference: str) -> str:
    return str(parse_reference(reference).job)


def in_queue(ce: HTCondorCE, reference: str) -> bool:
    done = ce.run("condor_q", job_of(reference), "-af", "JobStatus")
    return bool(done.stdout.strip())


class TestHTCondorCEConformance(BackendConformance):
    @pytest.fixture(autouse=True)
    def _ce(self, ce: HTCondorCE) -> None:
        self.htcondor = ce

    @pytest.fixture
    def restarted_backend(self, ce: HTCondorCE, tmp_path: Path) -> Callable[[], Backend]:
        return lambda: make_backend(ce, tmp_path)

    @pytest.fixture
    def launch_factory(self, ce: HTCondorCE) -> LaunchFactory:
        return node_launch(ce)

    def vanish(self, reference: str) -> None:
        # Forced out of the queue behind the backend's back (condor_rm -forcex), and then
        # older in the history than the backend looks: the CE no longer knows the job.
        job = job_of(reference)
        self.htcondor.run("condor_rm", job)
        self.htcondor.run("condor_rm", "-forcex", job)
        deadline = time.monotonic() + 10
        while in_queue(self.htcondor, reference):
            assert time.monotonic() < deadline, f"job {job} survives condor_rm -forcex"
            time.sleep(0.1)
        time.sleep(HISTORY_LOOKBACK + 1.0)

    def test_running_then_done(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        """As the suite's, but a CE's job waits (spooling, then Idle -> Waiting) before it runs."""
        ref = self.submit_one(
            backend, launch_factory, "import time; time.sleep(1.5); print('pilot says hello')"
        )
        first = backend.status([ref])[ref]
        assert first.state is PilotState.WAITING, first
        wait_status(backend, ref, is_running, timeout=START)
        done = wait_status(backend, ref, is_final)
        assert done.state is PilotState.DONE, done
        assert done.exit_code == 0
        assert "pilot says hello" in backend.fetch_output(ref)


# ---- many pilots, one transaction -------------------------------------------------------------


class RecordingRunner:
    """The real child runner, remembering what it was given (to look for tokens there)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes, dict[str, str]]] = []

    def __call__(
        self, argv: Sequence[str], stdin: bytes, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((list(argv), stdin, dict(env)))
        return run_child(argv, stdin, env, timeout)

    def ops(self, op: str) -> list[dict[str, Any]]:
        requests = [json.loads(stdin) for _, stdin, _ in self.calls]
        return [r for r in requests if r["op"] == op]


def test_many_pilots_go_in_few_transactions(ce: HTCondorCE, tmp_path: Path) -> None:
    backend = make_backend(ce, tmp_path, batch_size=5)
    runner = RecordingRunner()
    backend._runner = runner
    code = "import sys, os; print('pilot', os.environ['GRIDPILOT_TEST'], sys.argv[-1])"
    launches = [node_launch(ce)(f"p{i:02d}-{uuid.uuid4().hex[:6]}", code) for i in range(12)]
    refs = submit(backend, *launches)
    # 12 pilots in transactions of at most 5: three clusters of consecutive procs.
    assert len(runner.ops("submit")) == 3
    jobs = [parse_reference(r).job for r in refs]
    clusters = sorted({j.cluster for j in jobs})
    assert len(clusters) == 3
    assert [j.proc for j in jobs] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert [len(op["items"]) for op in runner.ops("submit")] == [5, 5, 2]
    deadline = time.monotonic() + 90
    while not all(s.state is PilotState.DONE for s in backend.status(refs).values()):
        assert time.monotonic() < deadline, backend.status(refs)
        time.sleep(0.5)
    # One status call per poll for all of them, whatever their number.
    assert all(len(op["jobs"]) <= 12 for op in runner.ops("status"))
    for ref in refs:
        assert re.fullmatch(f"pilot 1 {SCRATCH}\n", backend.fetch_output(ref))


# ---- refusals and an absent CE -----------------------------------------------------------------


def forged_token() -> str:
    """A well-formed IDTOKEN for the test identity, signed with a key the CE does not have."""
    claims = {"sub": IDENTITY, "iss": DOMAIN, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, "not-the-pool-key-" * 4, algorithm="HS256", headers={"kid": "POOL"})


def test_refused_token_is_a_permanent_failure_naming_the_ce(ce: HTCondorCE, tmp_path: Path) -> None:
    token = forged_token()
    token_file = tmp_path / "forged.token"
    token_file.write_text(token + "\n")
    backend = make_backend(ce, tmp_path / "w", token_file=str(token_file))
    launches = [node_launch(ce)(uuid.uuid4().hex, "pass") for _ in range(2)]
    results = backend.submit(SubmitRequest(QUEUE, tuple(launches)))
    assert [r.outcome for r in results] == [SubmitOutcome.FAILED] * 2
    error = results[0].error
    assert f"HTCondor-CE {ce.schedd} (collector {ce.collector})" in error
    assert "AUTHENTICATE" in error
    assert token not in error
    assert not any((backend.work_dir / "pilots").iterdir())


def test_unreadable_token_file_is_a_permanent_failure(ce: HTCondorCE, tmp_path: Path) -> None:
    backend = make_backend(ce, tmp_path, token_file=str(tmp_path / "missing.token"))
    [result] = backend.submit(SubmitRequest(QUEUE, (node_launch(ce)(uuid.uuid4().hex, "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert f"cannot read token_file {tmp_path / 'missing.token'}" in result.error
    assert ce.schedd in result.error


def test_unknown_schedd_is_a_permanent_failure(ce: HTCondorCE, tmp_path: Path) -> None:
    backend = make_backend(ce, tmp_path, schedd="ce-nosuch")
    [result] = backend.submit(SubmitRequest(QUEUE, (node_launch(ce)(uuid.uuid4().hex, "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "schedd ce-nosuch is not known to the collector" in result.error


def test_unreachable_collector_is_retried(ce: HTCondorCE, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    backend = make_backend(ce, tmp_path, collector=dead, timeout=20.0)
    [result] = backend.submit(SubmitRequest(QUEUE, (node_launch(ce)(uuid.uuid4().hex, "pass"),)))
    assert result.outcome is SubmitOutcome.RETRY
    assert f"(collector {dead})" in result.error
    assert "Failed communication with collector" in result.error
    assert not any((backend.work_dir / "pilots").iterdir())
    # Asking about pilots fails as a whole, naming the CE (the queue then sits out).
    records = backend.work_dir / "records"
    records.mkdir(exist_ok=True)
    ref = f"{ce.schedd}#999.0"
    (records / ref).write_text(json.dumps({"pilot_id": "p", "submitted": time.time()}))
    with pytest.raises(BackendError, match=rf"status failed: HTCondor-CE .*collector {dead}"):
        backend.status([ref])


def test_bad_submit_description_is_a_permanent_failure(ce: HTCondorCE, tmp_path: Path) -> None:
    backend = make_backend(ce, tmp_path, extra_submit={"requirements": "((("})
    [result] = backend.submit(SubmitRequest(QUEUE, (node_launch(ce)(uuid.uuid4().hex, "pass"),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "Parse error in expression" in result.error
    # Nothing was left in the queue (the transaction never committed).
    assert not ce.run("condor_q", "-allusers", "-af", "ClusterId").stdout.strip()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus": 1}, r"queues\[test-queue\]\.backend_options.*bogus"),
        ({"token_file": ""}, r"backend_options\.token_file: required"),
        ({"batch_size": "many"}, r"batch_size"),
        ({"extra_submit": {"transfer_input_files": "/etc/shadow"}}, r"extra_submit\.transfer"),
    ],
)
def test_bad_options_are_refused_naming_the_field(
    ce: HTCondorCE, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendConfigError, match=message):
        make_backend(ce, tmp_path, **options)


def test_factory_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    context = BackendContext("q", Path("director"), {"collector": "ce01", "token_file": "/t"})
    backend = create_htcondorce_backend(context)
    assert isinstance(backend, HTCondorCEBackend)
    assert backend.work_dir == tmp_path.resolve() / "director" / "htcondorce"
    assert (backend.options.collector, backend.options.schedd) == ("ce01:9619", "ce01")
    assert backend.ce == "HTCondor-CE ce01 (collector ce01:9619)"
    # The registry's lazy entry ("sitedirectors.htcondorce:create_htcondorce_backend").
    registered = default_registry().create("htcondorce", context)
    assert isinstance(registered, HTCondorCEBackend)


# ---- what the CE does to pilots ----------------------------------------------------------------


def test_held_pilot_fails_with_its_hold_reason_and_is_removed(
    ce: HTCondorCE, backend: HTCondorCEBackend
) -> None:
    [ref] = submit(backend, node_launch(ce)(uuid.uuid4().hex, "import time; time.sleep(60)"))
    wait_status(backend, ref, is_running, timeout=START)
    held = ce.run("condor_hold", "-reason", "memory usage exceeded request_memory", job_of(ref))
    assert held.returncode == 0, held.stderr
    failed = wait_status(backend, ref, is_final)
    assert failed.state is PilotState.FAILED
    assert failed.native == "Held"
    assert failed.reason.startswith("held by the CE: memory usage exceeded request_memory")
    deadline = time.monotonic() + 15
    while in_queue(ce, ref):
        assert time.monotonic() < deadline, "the held pilot was not removed"
        time.sleep(0.2)
    history = ce.run("condor_history", job_of(ref), "-af", "RemoveReason").stdout
    assert "gridpilot: held: memory usage exceeded request_memory" in history
    # The next director asks the CE again, and the history says the same.
    assert backend.status([ref])[ref] == failed


def test_pilot_removed_behind_our_back_is_found_in_the_history(
    ce: HTCondorCE, tmp_path: Path
) -> None:
    backend = make_backend(ce, tmp_path, history_lookback=3600.0)
    [ref] = submit(backend, node_launch(ce)(uuid.uuid4().hex, "import time; time.sleep(60)"))
    wait_status(backend, ref, is_running, timeout=START)
    removed = ce.run("condor_rm", "-reason", "draining the CE", job_of(ref))
    assert removed.returncode == 0, removed.stderr
    deadline = time.monotonic() + 15
    while in_queue(ce, ref):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    gone = backend.status([ref])[ref]
    assert gone.state is PilotState.ABORTED
    assert gone.reason.startswith("removed from the CE: draining the CE")


def test_reference_of_another_schedd_is_unknown(backend: HTCondorCEBackend) -> None:
    status = backend.status(["other-ce#1.0"])["other-ce#1.0"]
    assert status.state is PilotState.UNKNOWN
    assert "submitted to schedd other-ce" in status.reason


def test_cleanup_removes_local_files_and_forgets(
    ce: HTCondorCE, backend: HTCondorCEBackend, tmp_path: Path
) -> None:
    launch = node_launch(ce)(uuid.uuid4().hex, "print('bye')")
    [ref] = submit(backend, launch)
    assert wait_status(backend, ref, is_final, timeout=START).state is PilotState.DONE
    assert (backend.work_dir / "pilots" / launch.pilot_id / "pilot.log").read_text() == "bye\n"
    # Its log retrieved, the job left the CE's queue (within the schedd's periodic check).
    deadline = time.monotonic() + 30
    while in_queue(ce, ref):
        assert time.monotonic() < deadline, "the retrieved job stays in the CE's queue"
        time.sleep(0.5)
    backend.cleanup([ref])
    assert not (backend.work_dir / "pilots" / launch.pilot_id).exists()
    assert not (backend.work_dir / "records" / ref).exists()
    with pytest.raises(BackendError, match="no record"):
        backend.fetch_output(ref)


def test_cleanup_releases_a_completed_job_whose_log_never_came(
    ce: HTCondorCE, backend: HTCondorCEBackend
) -> None:
    """A completed job keeps its output in the CE's spool (LeaveJobInQueue) until retrieved;
    when the log cannot be retrieved, cleanup still lets the job and its spool go."""
    launch = node_launch(ce)(uuid.uuid4().hex, "print('never read')")
    [ref] = submit(backend, launch)
    deadline = time.monotonic() + START
    while ce.run("condor_q", job_of(ref), "-af", "JobStatus").stdout.split() != ["4"]:
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.3)
    # Where its output would go is not a directory: the retrieval fails (a warning), the
    # state is known all the same.
    pilot_dir = backend.pilot_dir(launch.pilot_id)
    shutil.rmtree(pilot_dir)
    pilot_dir.write_text("not a directory\n")
    assert backend.status([ref])[ref].state is PilotState.DONE
    assert in_queue(ce, ref)
    backend.cleanup([ref])
    deadline = time.monotonic() + 30
    while in_queue(ce, ref):
        assert time.monotonic() < deadline, "the completed job stays in the CE's queue"
        time.sleep(0.5)
    assert backend.status([ref])[ref].state is PilotState.UNKNOWN
    assert not pilot_dir.exists()


# ---- the token's path and the bundle -----------------------------------------------------------


def test_token_travels_only_in_a_private_file(
    ce: HTCondorCE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never in the submit description, a command line, an environment or the job ad; on the
    worker node a 0600 file; and the director's environment does not reach the pilot."""
    token = "registration-token-" + uuid.uuid4().hex
    monkeypatch.setenv("GRIDPILOT_DIRECTOR_ONLY", "director-secret")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    backend = make_backend(ce, tmp_path / "w")
    runner = RecordingRunner()
    backend._runner = runner
    launch = PilotLaunch(
        uuid.uuid4().hex, (ce.python, "-c", TOKEN_PROBE), registration_token=token, ca=ca
    )
    [ref] = submit(backend, launch)
    ad = ce.run("condor_q", "-allusers", "-long", job_of(ref)).stdout
    assert "GridpilotPilotId" in ad
    assert token not in ad
    assert wait_status(backend, ref, is_final, timeout=START).state is PilotState.DONE
    info = json.loads(backend.fetch_output(ref))
    # Relative to the job's scratch directory in the submission, absolute for the pilot.
    scratch = info["argv"][-1]
    assert re.fullmatch(SCRATCH, scratch)
    assert info["argv"] == [
        "--token-file", f"{scratch}/registration.token", "--ca", f"{scratch}/ca.pem",
        "--work-dir", scratch,
    ]  # fmt: skip
    assert info["token"] == token
    assert info["mode"] == 0o600
    assert info["ca"] == ca.read_text()
    assert token not in info["cmdline"]
    assert token not in json.dumps(info["environ"])
    assert "GRIDPILOT_DIRECTOR_ONLY" not in info["environ"]
    ce_token = ce.token_file.read_text().strip()
    for argv, stdin, env in runner.calls:
        for secret in (token, ce_token):
            assert secret not in " ".join(argv)
            assert secret.encode() not in stdin
            assert secret not in json.dumps(env)
    [request] = runner.ops("submit")
    assert token not in json.dumps(request["description"])
    # The spooled copy is the only one left: none on the director's disk.
    pilot_dir = backend.work_dir / "pilots" / launch.pilot_id
    assert not (pilot_dir / "registration.token").exists()
    assert token not in (pilot_dir / "start.sh").read_text()
    assert (pilot_dir.stat().st_mode & 0o777) == 0o700
    history = ce.run("condor_history", "-long", job_of(ref)).stdout
    assert token not in history


def assert_launched_in_scratch(output: str, bundle: PilotBundle, arguments: str = "") -> None:
    """The echo bundle's launcher ran from the cache in the job's scratch directory."""
    match = re.fullmatch(f"launcher from ({SCRATCH})/bundle-cache/(\\w+): (.*)\n", output)
    assert match, output
    scratch, sha256, argv = match.groups()
    assert sha256 == bundle.sha256
    assert argv == f"{arguments}--work-dir {scratch}"


def test_bundle_is_transferred_checked_and_run(ce: HTCondorCE, tmp_path: Path) -> None:
    bundle = echo_bundle(tmp_path / "bundle")
    backend = make_backend(ce, tmp_path / "w", bundle=bundle)
    launches = [PilotLaunch(uuid.uuid4().hex, arguments=("--site", "X")) for _ in range(2)]
    refs = submit(backend, *launches)
    for ref in refs:
        assert wait_status(backend, ref, is_final, timeout=START).state is PilotState.DONE
        output = backend.fetch_output(ref)
        # Unpacked in the job's scratch directory, where HTCondor put it.
        assert_launched_in_scratch(output, bundle, "--site X ")


def test_bundle_path_on_a_shared_file_system(ce: HTCondorCE, tmp_path: Path) -> None:
    """bundle_path: nothing transferred, the start script checks the node's copy."""
    shared = tmp_path / "cvmfs"
    bundle = echo_bundle(shared)
    shared.chmod(0o755)
    with ce.share(shared):
        backend = make_backend(ce, tmp_path / "w", bundle=bundle, bundle_path=str(bundle.path))
        [ref] = submit(backend, PilotLaunch(uuid.uuid4().hex))
        assert wait_status(backend, ref, is_final, timeout=START).state is PilotState.DONE
        output = backend.fetch_output(ref)
        assert_launched_in_scratch(output, bundle)
        # A bundle that is not the director's is refused on the node (exit 78).
        other = make_backend(
            ce,
            tmp_path / "w2",
            bundle=PilotBundle(bundle.path, "0" * 64),
            bundle_path=str(bundle.path),
        )
        [bad] = submit(other, PilotLaunch(uuid.uuid4().hex))
        refused = wait_status(other, bad, is_final, timeout=START)
    assert refused.state is PilotState.FAILED
    assert refused.exit_code == 78
    assert "checksum mismatch" in other.fetch_output(bad)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """An HTTP server for `directory` on 127.0.0.1 (the worker nodes share the network)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_bundle_url_is_fetched_by_the_node(ce: HTCondorCE, tmp_path: Path) -> None:
    """bundle_url: the worker node downloads the bundle (HTCondor's URL transfer), instead of
    one copy per pilot going through the CE's spool; a URL that fails holds the pilot."""
    bundle = echo_bundle(tmp_path / "www")
    with serving(tmp_path / "www") as base:
        url = f"{base}/{bundle.path.name}"
        backend = make_backend(ce, tmp_path / "w", bundle=bundle, bundle_url=url)
        [ref] = submit(backend, PilotLaunch(uuid.uuid4().hex))
        assert wait_status(backend, ref, is_final, timeout=START).state is PilotState.DONE
        output = backend.fetch_output(ref)
        assert_launched_in_scratch(output, bundle)
        missing = make_backend(ce, tmp_path / "w2", bundle=bundle, bundle_url=f"{base}/nosuch.tgz")
        [bad] = submit(missing, PilotLaunch(uuid.uuid4().hex))
        held = wait_status(missing, bad, is_final, timeout=START)
    assert held.state is PilotState.FAILED
    assert held.native == "Held"
    assert held.reason.startswith("held by the CE: ")
    assert "nosuch.tgz" in held.reason


def test_no_bundle_and_no_command_is_a_permanent_failure(backend: HTCondorCEBackend) -> None:
    [result] = backend.submit(SubmitRequest(QUEUE, (PilotLaunch(uuid.uuid4().hex),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "no pilot bundle" in result.error
