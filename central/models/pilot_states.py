"""Pilot states as central records them; backends map their native states onto these.

Mirrored one to one by the proto enum `gridpilot.v1.PilotState` (PILOT_STATE_<NAME>).
"""

from __future__ import annotations

from enum import StrEnum


class PilotState(StrEnum):
    SUBMITTED = "Submitted"
    WAITING = "Waiting"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    ABORTED = "Aborted"
    UNKNOWN = "Unknown"


FINAL_PILOT_STATES: frozenset[PilotState] = frozenset(
    {PilotState.DONE, PilotState.FAILED, PilotState.ABORTED}
)

# A pilot whose backend state stays Unknown this long is declared Aborted.
UNKNOWN_TO_ABORTED_SECONDS = 3600.0
