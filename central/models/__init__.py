"""Domain types of central: job and pilot states with their transition tables."""

from central.models.job_states import (
    FINAL_STATES,
    IllegalTransitionError,
    JobStatus,
    check_transition,
)
from central.models.pilot_states import FINAL_PILOT_STATES, PilotState

__all__ = [
    "FINAL_PILOT_STATES",
    "FINAL_STATES",
    "IllegalTransitionError",
    "JobStatus",
    "PilotState",
    "check_transition",
]
