"""Fixtures shared by the backend tests: a real one-node SLURM for the whole session.

`slurm_cluster` is what tests use (`.conf`, `.partition`, `.env` with SLURM_CONF);
`slurm_daemons` also lets a test restart the controller. Outside CI a machine without SLURM
skips these tests; under CI=true that is a failure (tests/support/backends.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.slurm import SlurmCluster, SlurmDaemons, require_slurm, running_slurm


@pytest.fixture(scope="session")
def slurm_daemons() -> Iterator[SlurmDaemons]:
    require_slurm()
    with running_slurm() as daemons:
        yield daemons


@pytest.fixture(scope="session")
def slurm_cluster(slurm_daemons: SlurmDaemons) -> SlurmCluster:
    return slurm_daemons.cluster
