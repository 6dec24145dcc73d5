"""The slurm backend against a real one-node SLURM: the conformance suite, then what only a
batch system has (job arrays, sbatch refusals, jobs SLURM forgot) and the token's path."""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import msgspec
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
from sitedirectors.remote import (
    DEFAULT_COMMAND_TIMEOUT,
    CommandResult,
    LocalFiles,
    LocalRunner,
)
from sitedirectors.slurm import SlurmBackend, SlurmOptions, create_slurm_backend
from sitedirectors.slurm_script import sbatch_argv
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
from tests.support.processes import kill_everything_under
from tests.support.slurm import (
    SlurmCluster,
    SlurmDaemons,
    cancel_all_jobs,
    free_port,
    run_slurm,
)

# A job that SLURM does not show is "vanished" after this long (short: the tests make some).
VANISH_GRACE = 2.0


def python_launch(pilot_id: str, code: str) -> PilotLaunch:
    return PilotLaunch(pilot_id, (sys.executable, "-c", code), environment={"GRIDPILOT_TEST": "1"})


def make_backend(
    cluster: SlurmCluster,
    work_dir: Path,
    bundle: PilotBundle | None = None,
    runner: LocalRunner | None = None,
    **options: object,
) -> SlurmBackend:
    settings: dict[str, object] = {
        "work_dir": str(work_dir),
        "partition": cluster.partition,
        "slurm_conf": str(cluster.conf),
        "vanish_grace": VANISH_GRACE,
        "command_timeout": 30.0,
        **options,
    }
    converted = msgspec.convert(settings, SlurmOptions)
    return SlurmBackend(runner or LocalRunner(), LocalFiles(), converted, bundle)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "slurm"


@pytest.fixture
def cleanup_jobs(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[None]:
    """Whatever a test submitted ends with it: jobs cancelled, stray processes killed."""
    yield
    cancel_all_jobs(slurm_cluster)
    kill_everything_under(tmp_path)


@pytest.fixture
def backend(
    slurm_cluster: SlurmCluster, work_dir: Path, cleanup_jobs: None
) -> Iterator[SlurmBackend]:
    instance = make_backend(slurm_cluster, work_dir)
    yield instance
    instance.close()


class TestSlurmConformance(BackendConformance):
    @pytest.fixture(autouse=True)
    def _daemons(self, slurm_daemons: SlurmDaemons) -> None:
        self.daemons = slurm_daemons

    @pytest.fixture
    def restarted_backend(
        self, slurm_cluster: SlurmCluster, work_dir: Path
    ) -> Callable[[], Backend]:
        return lambda: make_backend(slurm_cluster, work_dir)

    @pytest.fixture
    def launch_factory(self) -> LaunchFactory:
        return python_launch

    def vanish(self, reference: str) -> None:
        # The controller loses its state (a crash without its state files): it no longer
        # knows the job, and slurmd ends the job it still runs.
        self.daemons.restart_controller(clear_state=True)

    def test_running_then_done(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        """As the suite's, but a batch job waits (PENDING -> Waiting) before it runs."""
        ref = self.submit_one(
            backend, launch_factory, "import time; time.sleep(1.5); print('pilot says hello')"
        )
        first = backend.status([ref])[ref]
        assert first.state in (PilotState.WAITING, PilotState.RUNNING), first
        wait_status(backend, ref, is_running)
        done = wait_status(backend, ref, is_final)
        assert done.state is PilotState.DONE, done
        assert done.exit_code == 0
        assert "pilot says hello" in backend.fetch_output(ref)


# ---- job arrays --------------------------------------------------------------------------------


def test_several_pilots_are_one_job_array(
    slurm_cluster: SlurmCluster, backend: SlurmBackend
) -> None:
    code = "import os, sys; print('task', os.environ['SLURM_ARRAY_TASK_ID'], sys.argv[1:])"
    launches = [python_launch(uuid.uuid4().hex, code) for _ in range(3)]
    refs = submit(backend, *launches)
    job_id = refs[0].partition("_")[0]
    assert refs == [f"{job_id}_{task}" for task in range(3)]
    for task, (ref, launch) in enumerate(zip(refs, launches, strict=True)):
        assert wait_status(backend, ref, is_final).state is PilotState.DONE
        output = backend.fetch_output(ref)
        # Each task ran its own pilot, in its own directory, with its own log.
        assert output.startswith(f"task {task} ")
        assert f"{backend.pilot_dir(launch.pilot_id)}/work" in output
    shown = run_slurm(slurm_cluster, "scontrol", "show", "job", job_id).stdout
    assert shown.count(f"ArrayJobId={job_id}") == 3


def test_array_off_submits_one_job_per_pilot(
    slurm_cluster: SlurmCluster, work_dir: Path, cleanup_jobs: None
) -> None:
    backend = make_backend(slurm_cluster, work_dir, array=False)
    refs = submit(backend, *(python_launch(uuid.uuid4().hex, "pass") for _ in range(3)))
    assert all(ref.isdigit() for ref in refs)
    assert len(set(refs)) == 3
    for ref in refs:
        assert wait_status(backend, ref, is_final).state is PilotState.DONE


def test_pending_array_tasks_are_waiting_and_cancelled_one_by_one(
    slurm_cluster: SlurmCluster, work_dir: Path, cleanup_jobs: None
) -> None:
    # --hold: the whole array stays pending, shown by SLURM as one record "0-2".
    backend = make_backend(slurm_cluster, work_dir, extra_sbatch_args=["--hold"])
    refs = submit(backend, *(python_launch(uuid.uuid4().hex, "pass") for _ in range(3)))
    statuses = backend.status(refs)
    assert {s.state for s in statuses.values()} == {PilotState.WAITING}
    assert all(s.native == "PENDING" and "JobHeldUser" in s.reason for s in statuses.values())
    backend.cancel(refs[:1])
    cancelled = wait_status(backend, refs[0], is_final, timeout=10)
    assert cancelled.state is PilotState.ABORTED
    assert "cancelled" in cancelled.reason
    assert {backend.status([r])[r].state for r in refs[1:]} == {PilotState.WAITING}


# ---- the token's path --------------------------------------------------------------------------


class RecordingRunner(LocalRunner):
    """The real runner, remembering what it was given (to look for the token there)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], bytes, dict[str, str]]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        stdin: bytes | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.calls.append((tuple(argv), stdin or b"", dict(environment or {})))
        return super().run(argv, timeout=timeout, stdin=stdin, environment=environment)


def test_token_travels_only_in_a_private_file(
    slurm_cluster: SlurmCluster,
    work_dir: Path,
    tmp_path: Path,
    cleanup_jobs: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never in a command line, an environment, the batch script SLURM keeps or a file
    others can read; and the director's environment does not reach the pilot."""
    token = "registration-token-" + uuid.uuid4().hex
    monkeypatch.setenv("GRIDPILOT_DIRECTOR_ONLY", "director-secret")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    runner = RecordingRunner()
    backend = make_backend(slurm_cluster, work_dir, runner=runner)
    launch = PilotLaunch(
        uuid.uuid4().hex, (sys.executable, "-c", TOKEN_PROBE), registration_token=token, ca=ca
    )
    [ref] = submit(backend, launch)
    assert wait_status(backend, ref, is_final).state is PilotState.DONE
    info = json.loads(backend.fetch_output(ref))
    pilot_dir = backend.pilot_dir(launch.pilot_id)
    assert info["argv"] == [
        "--token-file", f"{pilot_dir}/registration.token",
        "--ca", f"{pilot_dir}/ca.pem",
        "--work-dir", f"{pilot_dir}/work",
    ]  # fmt: skip
    assert info["token"] == token
    assert (info["mode"], info["dir_mode"]) == (0o600, 0o700)
    assert info["ca"] == ca.read_text()
    assert token not in info["cmdline"]
    assert token not in json.dumps(info["environ"])
    assert "GRIDPILOT_DIRECTOR_ONLY" not in info["environ"]
    for argv, stdin, environment in runner.calls:
        assert token not in " ".join(argv)
        assert token.encode() not in stdin
        assert token not in json.dumps(environment)
    stored = run_slurm(slurm_cluster, "scontrol", "write", "batch_script", ref, "-")
    assert stored.returncode == 0, stored.stderr
    assert "start.sh" in stored.stdout
    assert token not in stored.stdout
    assert token not in (work_dir / "pilots" / launch.pilot_id / "start.sh").read_text()


# ---- refusals and jobs SLURM does not know -------------------------------------------------------


def test_bad_partition_is_a_permanent_failure_leaving_nothing(
    slurm_cluster: SlurmCluster, work_dir: Path, cleanup_jobs: None
) -> None:
    backend = make_backend(slurm_cluster, work_dir, partition="nosuch")
    launches = [python_launch(uuid.uuid4().hex, "pass") for _ in range(2)]
    results = backend.submit(SubmitRequest(QUEUE, tuple(launches)))
    assert [r.outcome for r in results] == [SubmitOutcome.FAILED] * 2
    assert "Invalid partition name specified" in results[0].error
    assert not any((work_dir / "pilots").iterdir())


def test_unreachable_controller_is_retried(
    slurm_daemons: SlurmDaemons, work_dir: Path, tmp_path: Path
) -> None:
    dead = tmp_path / "dead-slurm.conf"
    conf = slurm_daemons.conf.read_text()
    # Nothing listens there; a short MessageTimeout makes the commands give up in ~1 s.
    conf = re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={free_port()}", conf)
    dead.write_text(conf + "MessageTimeout=2\n")
    backend = make_backend(slurm_daemons.cluster, work_dir, slurm_conf=str(dead))
    [result] = backend.submit(SubmitRequest(QUEUE, (python_launch(uuid.uuid4().hex, "pass"),)))
    assert result.outcome is SubmitOutcome.RETRY
    assert "Unable to contact slurm controller" in result.error
    assert not any((work_dir / "pilots").iterdir())
    with pytest.raises(BackendError, match="Failed while looking for jobs"):
        backend.status(["1"])


def test_a_job_slurm_never_had_vanished(backend: SlurmBackend, work_dir: Path) -> None:
    """A reference the backend recorded but SLURM does not know (lost with the controller's
    state, or purged while the director was away) ends Aborted -- unless it is brand new."""
    records = work_dir / "references"
    records.mkdir(parents=True)
    old, new = "987654", "987655"
    (records / old).write_text(json.dumps({"pilot_id": "p-old", "submitted": time.time() - 600}))
    (records / new).write_text(json.dumps({"pilot_id": "p-new", "submitted": time.time()}))
    statuses = backend.status([old, new])
    assert statuses[old].state is PilotState.ABORTED
    assert statuses[old].reason == "job vanished from the batch system"
    assert statuses[new].state is PilotState.UNKNOWN
    assert "not (yet) visible" in statuses[new].reason
    time.sleep(VANISH_GRACE)
    assert backend.status([new])[new].state is PilotState.ABORTED


def test_unsafe_or_existing_pilot_is_refused(backend: SlurmBackend, work_dir: Path) -> None:
    existing = uuid.uuid4().hex
    (work_dir / "pilots" / existing).mkdir(parents=True)
    results = backend.submit(
        SubmitRequest(QUEUE, (python_launch("../escape", "pass"), python_launch(existing, "pass")))
    )
    assert [r.outcome for r in results] == [SubmitOutcome.FAILED] * 2
    assert "unsafe pilot id" in results[0].error
    assert "exists" in results[1].error
    assert not (work_dir / "escape").exists()


def test_cleanup_removes_pilot_files(backend: SlurmBackend, work_dir: Path) -> None:
    launch = python_launch(uuid.uuid4().hex, "print('bye')")
    [ref] = submit(backend, launch)
    wait_status(backend, ref, is_final)
    assert (work_dir / "pilots" / launch.pilot_id / "reference").read_text() == ref
    backend.cleanup([ref])
    assert not (work_dir / "pilots" / launch.pilot_id).exists()
    assert not (work_dir / "references" / ref).exists()
    with pytest.raises(BackendError, match="no record"):
        backend.fetch_output(ref)


# ---- the pilot bundle --------------------------------------------------------------------------


def test_bundle_is_staged_once_and_runs_the_pilot(
    slurm_cluster: SlurmCluster, work_dir: Path, tmp_path: Path, cleanup_jobs: None
) -> None:
    bundle = echo_bundle(tmp_path / "bundle")
    backend = make_backend(slurm_cluster, work_dir, bundle=bundle)
    launches = [PilotLaunch(uuid.uuid4().hex, arguments=("--site", "X")) for _ in range(2)]
    refs = submit(backend, *launches)
    staged = work_dir / "bundles" / bundle.file_name
    assert staged.read_bytes() == bundle.path.read_bytes()
    first_copy = staged.stat().st_mtime_ns
    for ref, launch in zip(refs, launches, strict=True):
        assert wait_status(backend, ref, is_final).state is PilotState.DONE
        output = backend.fetch_output(ref)
        assert f"launcher from {work_dir}/bundle-cache/{bundle.sha256}" in output
        assert f"--site X --work-dir {backend.pilot_dir(launch.pilot_id)}/work" in output
    [again] = submit(backend, PilotLaunch(uuid.uuid4().hex))
    assert staged.stat().st_mtime_ns == first_copy  # not copied again
    assert wait_status(backend, again, is_final).state is PilotState.DONE
    assert [p.name for p in (work_dir / "bundles").iterdir()] == [bundle.file_name]


def test_no_bundle_and_no_command_is_a_permanent_failure(backend: SlurmBackend) -> None:
    [result] = backend.submit(SubmitRequest(QUEUE, (PilotLaunch(uuid.uuid4().hex),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "no pilot bundle" in result.error


# ---- options -----------------------------------------------------------------------------------


def test_sbatch_command_line() -> None:
    options = SlurmOptions(
        work_dir="/w",
        partition="grid",
        account="belle",
        qos="pilot",
        time_limit=90,
        extra_sbatch_args=["--mem=2000"],
    )
    assert sbatch_argv(options, QUEUE, ["/w/pilots/a"], "/w") == [
        "sbatch", "--parsable", "--job-name=gridpilot-test-queue", "--export=NONE",
        "--nodes=1", "--ntasks=1", "--cpus-per-task=1",
        "--partition=grid", "--account=belle", "--qos=pilot", "--time=90",
        "--chdir=/w/pilots/a", "--output=/w/pilots/a/pilot.log", "--mem=2000",
    ]  # fmt: skip
    array = sbatch_argv(SlurmOptions(work_dir="/w"), QUEUE, ["/w/pilots/a", "/w/pilots/b"], "/w")
    assert array[-3:] == ["--array=0-1", "--chdir=/w", "--output=/dev/null"]
    assert not any(a.startswith(("--partition", "--time")) for a in array)


def test_factory_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = create_slurm_backend(BackendContext("q", Path("director"), {}))
    assert backend.work_dir == str(tmp_path.resolve() / "director" / "slurm")
    assert backend.bundle_dir == f"{backend.work_dir}/bundles"
    assert backend.cache_dir == f"{backend.work_dir}/bundle-cache"
    assert backend.options.array is True
    custom = create_slurm_backend(
        BackendContext(
            "q",
            tmp_path,
            {"work_dir": "/shared/gp", "bundle_dir": "/shared/b", "partition": "grid"},
        )
    )
    assert (custom.work_dir, custom.bundle_dir) == ("/shared/gp", "/shared/b")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus": 1}, r"queues\[q\]\.backend_options.*bogus"),
        ({"time_limit": "long"}, "time_limit"),
        ({"time_limit": -1}, r"backend_options\.time_limit must not be negative"),
        ({"command_timeout": 0}, r"backend_options\.command_timeout must be positive"),
        ({"work_dir": "relative"}, r"backend_options\.work_dir must be an absolute path"),
        ({"extra_sbatch_args": "--mem=1"}, "extra_sbatch_args"),
    ],
)
def test_factory_rejects_bad_options(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BackendConfigError, match=message):
        create_slurm_backend(BackendContext("q", tmp_path, options))
