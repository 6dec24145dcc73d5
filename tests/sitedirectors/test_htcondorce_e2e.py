"""Central + site director + a real schedd (the engine of an HTCondor-CE, in a Debian 13 root:
tests/support/htcondor.py): pilots from the pilot bundle, started by the schedd's startd, run
real payload jobs to Done; a CE that refuses the director fails its queue visibly.

The worker node is the Debian 13 root, so its pilots run Debian 13's python3 (3.13) and the
bundle is built for it (cp313 wheels). The root shares the host's network (central on
127.0.0.1) and sees one host directory at the same path (`shared`): central's file:// SEs and
the stand-in basf2 release live there, as a site's shared software and storage would.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

import gridpilot
from gridpilot.bundle import BuildOptions, build_bundle
from gridpilot.demo.release import create_release
from gridpilot.v1 import common_pb2
from sitedirectors.bundle import PilotBundle
from sitedirectors.config import config_from_dict
from sitedirectors.director import Director
from tests.sitedirectors.helpers import (
    RELEASE,
    admin_queues,
    config_dict,
    job_statuses,
    job_table,
    kill_pilots,
    list_pilots,
    run_until,
    submit_payload_jobs,
)
from tests.support.bundle import TEST_BUILD_EPOCH
from tests.support.central_process import CE, QUEUE, CentralHandle, default_config, running_central
from tests.support.htcondor import DOMAIN, IDENTITY, HTCondorCE

# One schedd in the one cached Debian root: every HTCondor test on the same test worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("htcondor")]

PS = common_pb2.PilotState
JS = common_pb2.JobStatus
FINAL_JOB_STATUSES = {JS.JOB_STATUS_DONE, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_KILLED}
CONDOR_QUEUE = "condor"


@pytest.fixture(scope="session")
def node_bundle(htcondor_ce: HTCondorCE, tmp_path_factory: pytest.TempPathFactory) -> PilotBundle:
    """The real pilot bundle, built for the worker node's Python (the root's python3)."""
    probe = htcondor_ce.run(
        htcondor_ce.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"
    )
    assert probe.returncode == 0, probe.stderr
    options = BuildOptions(
        tmp_path_factory.mktemp("node-bundle"),
        pythons=(probe.stdout.strip(),),
        build_time=TEST_BUILD_EPOCH,
    )
    return PilotBundle.load(build_bundle(options).path)


@pytest.fixture
def shared(htcondor_ce: HTCondorCE) -> Iterator[Path]:
    """A host directory the worker nodes see at the same path; the CE's queue and this
    directory are left empty, whatever the test did."""
    path = Path(tempfile.mkdtemp(prefix="gridpilot-htcondor-e2e-"))
    path.chmod(0o755)
    try:
        with htcondor_ce.share(path):
            try:
                yield path
            finally:
                htcondor_ce.daemons.remove_all_jobs()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def release_for_nodes(directory: Path, python: str) -> None:
    """The stand-in basf2 release submit_payload_jobs uses, runnable on the worker nodes:
    run by their Python, with the stand-in's (standard-library only) module copied next to
    it, since the nodes have no gridpilot installed."""
    package = Path(gridpilot.__file__).resolve().parent
    lib = directory / "standin-lib"
    for name in ("__init__.py", "demo/__init__.py", "demo/basf2_standin.py"):
        (lib / "gridpilot" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / name, lib / "gridpilot" / name)
    basf2 = create_release(directory / "releases", RELEASE) / "bin" / "basf2"
    basf2.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={lib}; export PYTHONPATH\n"
        f'exec {python} -m gridpilot.demo.basf2_standin "$@"\n'
    )


def central_for_nodes(shared: Path, overrides: dict[str, Any] | None = None) -> Any:
    """Central with its data and SEs under `shared`; the SEs writable by the jobs' user."""
    return running_central(shared / "central", overrides)


def open_ses(central: CentralHandle) -> None:
    for directory in central.se_dirs.values():
        directory.chmod(0o777)


def condor_queue_options(ce: HTCondorCE, **options: Any) -> dict[str, Any]:
    return {
        "collector": ce.collector,
        "schedd": ce.schedd,
        "token_file": str(ce.token_file),
        "timeout": 30.0,
        **options,
    }


def pilots_done(central: CentralHandle) -> bool:
    pilots = list_pilots(central)
    return bool(pilots) and {p.state for p in pilots} == {PS.PILOT_STATE_DONE}


def ce_queue(ce: HTCondorCE) -> list[str]:
    return ce.run("condor_q", "-allusers", "-af", "ClusterId").stdout.split()


# ---- 1. jobs Done through pilots the schedd started --------------------------------------------


def test_pilots_from_the_bundle_run_jobs_to_done(
    tmp_path: Path, shared: Path, htcondor_ce: HTCondorCE, node_bundle: PilotBundle
) -> None:
    ce = htcondor_ce
    with central_for_nodes(shared) as central:
        open_ses(central)
        release_for_nodes(shared, ce.python)
        job_ids, software_setup = submit_payload_jobs(central, shared, 3)
        pilot = {
            "command": [],
            "environment": {"GRIDPILOT_PYTHON": ce.python},
            "idle_timeout": 3.0,
            "extra_args": ["--min-disk-mb", "1", "--kill-grace", "3"],
            "software_setup": software_setup,
        }
        config = config_dict(
            tmp_path,
            central,
            backend="htcondorce",
            pilot=pilot,
            backend_options=condor_queue_options(ce),
        )
        config["director"]["pilot_bundle"] = str(node_bundle.path)
        director = Director(config_from_dict(config))
        try:
            run_until(
                director,
                lambda: set(job_statuses(central)) <= FINAL_JOB_STATUSES,
                timeout=120,
                what="jobs to end through pilots started by the schedd",
            )
            assert job_statuses(central) == [JS.JOB_STATUS_DONE] * 3, job_table(central)
            # Idle pilots end on their own; their logs come back from the CE.
            run_until(
                director,
                lambda: pilots_done(central) and not ce_queue(ce),
                timeout=60,
                what="pilots Done and gone from the CE's queue",
            )
            director.run_cycle()
        finally:
            director.close()
        pilots = list_pilots(central)
    assert len(job_ids) == 3
    assert 1 <= len(pilots) <= 3
    assert sum(p.jobs_run for p in pilots) == 3
    work_dir = tmp_path / "director" / "htcondorce"
    for p in pilots:
        assert p.backend == "htcondorce"
        assert p.reference.startswith(f"{ce.schedd}#")
        assert p.registered_unix > 0
        assert p.log_tail, f"pilot {p.pilot_id} is Done without a log tail in central"
        assert "pilot.registered" in p.log_tail
        job = p.reference.partition("#")[2]
        # The schedd ran it to completion with exit code 0, as its history says.
        history = ce.run("condor_history", job, "-af", "JobStatus", "ExitCode", "Owner").stdout
        assert history.split() == ["4", "0", "griduser"], history
        pilot_dir = work_dir / "pilots" / p.pilot_id
        assert "pilot.registered" in (pilot_dir / "pilot.log").read_text()
        assert not (pilot_dir / "registration.token").exists()


# ---- 2. a CE that refuses the director -------------------------------------------------------


def forged_token_file(path: Path) -> Path:
    claims = {"sub": IDENTITY, "iss": DOMAIN, "iat": int(time.time()), "jti": "forged"}
    path.write_text(
        jwt.encode(claims, "not-the-pool-key" * 4, algorithm="HS256", headers={"kid": "POOL"})
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("fault", ["token", "schedd"])
def test_refusing_ce_fails_its_queue_visibly_and_not_the_others(
    tmp_path: Path, shared: Path, htcondor_ce: HTCondorCE, fault: str
) -> None:
    ce = htcondor_ce
    if fault == "token":
        bad = {"token_file": str(forged_token_file(tmp_path / "forged.token"))}
        said = "AUTHENTICATE"
    else:
        bad = {"schedd": "ce-nosuch"}
        said = "schedd ce-nosuch is not known to the collector"
    site = default_config(shared / "central")["sites"][0]
    site["ces"] = [{"name": CE, "queues": [QUEUE, CONDOR_QUEUE]}]
    with central_for_nodes(shared, {"sites": [site]}) as central:
        submit_payload_jobs(central, shared, 2)
        # The site's other queue: local pilots that just wait.
        config = config_dict(tmp_path, central, max_waiting=2, max_total=2)
        config["queues"].append(
            {
                **config["queues"][0],
                "name": CONDOR_QUEUE,
                "backend": "htcondorce",
                "pilot": {"command": [ce.python, "-c", "import time; time.sleep(60)"]},
                "backend_options": condor_queue_options(ce, **bad),
            }
        )
        skip_cycles = config["director"]["failing_queue_skip_cycles"]
        director = Director(config_from_dict(config))
        try:
            first = director.run_cycle()
            queues = {q["queue"]: q for q in admin_queues(central, tmp_path)}
            aborted = [p for p in list_pilots(central) if p.queue == CONDOR_QUEUE]
            paused = [director.run_cycle() for _ in range(skip_cycles)]
            aborted_while_paused = [p for p in list_pilots(central) if p.queue == CONDOR_QUEUE]
            again = director.run_cycle()
        finally:
            director.close()
            kill_pilots(tmp_path / "director" / "pilots")
    error = first.failing[CONDOR_QUEUE]
    assert f"HTCondor-CE {bad.get('schedd', ce.schedd)} (collector {ce.collector})" in error
    assert said in error
    assert queues[CONDOR_QUEUE]["state"] == "failing"
    assert queues[CONDOR_QUEUE]["backend"] == "htcondorce"
    assert said in queues[CONDOR_QUEUE]["error"]
    assert queues[CONDOR_QUEUE]["skip_cycles_left"] == skip_cycles
    # The site's other queue submitted its pilots and is ok.
    assert queues[QUEUE]["state"] == "ok"
    assert first.submitted[QUEUE] == 2
    # The refused pilots were recorded Aborted with the CE's words; the queue then sits out
    # (no new attempts) and fails again once it tries.
    assert aborted
    assert {p.state for p in aborted} == {PS.PILOT_STATE_ABORTED}
    assert all(said in p.status_reason for p in aborted)
    assert all(CONDOR_QUEUE in r.skipped and CONDOR_QUEUE not in r.submitted for r in paused)
    assert len(aborted_while_paused) == len(aborted)
    assert CONDOR_QUEUE in again.failing
    assert not ce_queue(ce)
