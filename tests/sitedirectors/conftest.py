"""Fixtures shared by the backend tests: real daemons, one of each for the whole session.

`slurm_cluster` is a one-node SLURM (`.conf`, `.partition`, `.env` with SLURM_CONF);
`slurm_daemons` also lets a test restart the controller. `arc_ce` is an A-REX with the fork
LRMS, `htcondor_ce` an HTCondor schedd as a CE runs it; `arc` and `ce` are the same, left as
found after each test. Outside CI a machine without them skips these tests; under CI=true
that is a failure (tests/support/backends.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.arc import ArcCe, require_arc, running_arc
from tests.support.bundle import require_node_python
from tests.support.htcondor import HTCondorCE, htcondor_for_session
from tests.support.slurm import SlurmCluster, SlurmDaemons, require_slurm, running_slurm


@pytest.fixture(scope="session")
def slurm_daemons() -> Iterator[SlurmDaemons]:
    require_slurm()
    with running_slurm() as daemons:
        yield daemons


@pytest.fixture(scope="session")
def slurm_cluster(slurm_daemons: SlurmDaemons) -> SlurmCluster:
    return slurm_daemons.cluster


@pytest.fixture(scope="session")
def arc_ce() -> Iterator[ArcCe]:
    require_arc()
    require_node_python()
    with running_arc() as ce:
        yield ce


@pytest.fixture
def arc(arc_ce: ArcCe) -> Iterator[ArcCe]:
    """The CE, left as found: this test's jobs killed and cleaned, their processes gone."""
    yield arc_ce
    arc_ce.kill_all_jobs()


@pytest.fixture(scope="session")
def htcondor_ce() -> Iterator[HTCondorCE]:
    with htcondor_for_session() as ce:
        yield ce


@pytest.fixture
def ce(htcondor_ce: HTCondorCE) -> Iterator[HTCondorCE]:
    """The CE, left as found: this test's jobs removed, their processes gone."""
    yield htcondor_ce
    htcondor_ce.daemons.remove_all_jobs()
