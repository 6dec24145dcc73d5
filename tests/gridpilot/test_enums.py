"""The proto state enums mirror the Python ones one to one, both ways."""

from __future__ import annotations

import pytest

from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState
from gridpilot.enums import (
    job_status_from_proto,
    job_status_to_proto,
    parse_job_status,
    pilot_state_from_proto,
    pilot_state_to_proto,
)
from gridpilot.v1 import common_pb2


def test_job_status_names_match_one_to_one() -> None:
    proto_names = set(common_pb2.JobStatus.keys()) - {"JOB_STATUS_UNSPECIFIED"}
    assert proto_names == {f"JOB_STATUS_{s.name}" for s in JobStatus}
    assert common_pb2.JobStatus.Value("JOB_STATUS_UNSPECIFIED") == 0


def test_pilot_state_names_match_one_to_one() -> None:
    proto_names = set(common_pb2.PilotState.keys()) - {"PILOT_STATE_UNSPECIFIED"}
    assert proto_names == {f"PILOT_STATE_{s.name}" for s in PilotState}
    assert common_pb2.PilotState.Value("PILOT_STATE_UNSPECIFIED") == 0


@pytest.mark.parametrize("status", list(JobStatus))
def test_job_status_round_trip(status: JobStatus) -> None:
    value = job_status_to_proto(status)
    assert value != 0
    assert job_status_from_proto(value) is status


@pytest.mark.parametrize("state", list(PilotState))
def test_pilot_state_round_trip(state: PilotState) -> None:
    value = pilot_state_to_proto(state)
    assert value != 0
    assert pilot_state_from_proto(value) is state


def test_every_proto_value_maps_back_and_distinct() -> None:
    job_values = [v for v in common_pb2.JobStatus.values() if v != 0]
    assert len({job_status_from_proto(v) for v in job_values}) == len(job_values)
    assert {job_status_to_proto(job_status_from_proto(v)) for v in job_values} == set(job_values)
    pilot_values = [v for v in common_pb2.PilotState.values() if v != 0]
    assert len({pilot_state_from_proto(v) for v in pilot_values}) == len(pilot_values)


def test_unspecified_is_refused() -> None:
    with pytest.raises(ValueError, match="job status is unspecified"):
        job_status_from_proto(common_pb2.JOB_STATUS_UNSPECIFIED)
    with pytest.raises(ValueError, match="pilot state is unspecified"):
        pilot_state_from_proto(common_pb2.PILOT_STATE_UNSPECIFIED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("done", JobStatus.DONE),
        ("Done", JobStatus.DONE),
        ("DONE", JobStatus.DONE),
        (" waiting\n", JobStatus.WAITING),
        ("Rescheduled", JobStatus.RESCHEDULED),
    ],
)
def test_parse_job_status_accepts_any_case(text: str, expected: JobStatus) -> None:
    assert parse_job_status(text) is expected


def test_parse_job_status_accepts_every_value() -> None:
    for status in JobStatus:
        assert parse_job_status(status.value) is status


@pytest.mark.parametrize("text", ["", "finished", "Don", "JOB_STATUS_DONE"])
def test_parse_job_status_refuses_unknown_with_choices(text: str) -> None:
    with pytest.raises(ValueError, match="unknown job status") as err:
        parse_job_status(text)
    assert "Waiting" in str(err.value)
    assert "Done" in str(err.value)
