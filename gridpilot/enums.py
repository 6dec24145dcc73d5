"""Conversions between the Python state enums and their proto mirrors.

The proto enums are named <PREFIX>_<NAME> for every member of the Python enum, so
conversion is by name; tests/gridpilot/test_enums.py checks the mirrors stay one to one.
"""

from __future__ import annotations

from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState
from gridpilot.v1 import common_pb2


def job_status_to_proto(status: JobStatus) -> common_pb2.JobStatus.ValueType:
    return common_pb2.JobStatus.Value(f"JOB_STATUS_{status.name}")


def job_status_from_proto(value: common_pb2.JobStatus.ValueType) -> JobStatus:
    name = common_pb2.JobStatus.Name(value).removeprefix("JOB_STATUS_")
    if name == "UNSPECIFIED":
        raise ValueError("job status is unspecified")
    return JobStatus[name]


def pilot_state_to_proto(state: PilotState) -> common_pb2.PilotState.ValueType:
    return common_pb2.PilotState.Value(f"PILOT_STATE_{state.name}")


def pilot_state_from_proto(value: common_pb2.PilotState.ValueType) -> PilotState:
    name = common_pb2.PilotState.Name(value).removeprefix("PILOT_STATE_")
    if name == "UNSPECIFIED":
        raise ValueError("pilot state is unspecified")
    return PilotState[name]


def parse_job_status(text: str) -> JobStatus:
    """A status as a user types it ("done", "Done", "DONE")."""
    for status in JobStatus:
        if status.value.lower() == text.strip().lower():
            return status
    choices = ", ".join(s.value for s in JobStatus)
    raise ValueError(f"unknown job status {text!r} (choose from {choices})")
