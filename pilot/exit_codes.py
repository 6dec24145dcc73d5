"""The pilot's exit codes: one numbered registry with a message each.

Site directors and batch systems only see the process exit code, so every way a pilot can
end has its own number; `describe(code)` turns one back into words for logs and reports.
"""

from __future__ import annotations

from enum import IntEnum


class PilotExitCode(IntEnum):
    OK = 0
    # argparse's own convention for usage errors.
    BAD_ARGUMENTS = 2
    NODE_CHECK_FAILED = 10
    REGISTRATION_FAILED = 11
    CENTRAL_UNREACHABLE = 12
    WORK_DIR_UNUSABLE = 13
    TERMINATED = 20
    INTERNAL_ERROR = 30

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES: dict[PilotExitCode, str] = {
    PilotExitCode.OK: "pilot ended normally",
    PilotExitCode.NODE_CHECK_FAILED: "the worker node failed the pilot's checks",
    PilotExitCode.REGISTRATION_FAILED: "central refused to register the pilot",
    PilotExitCode.CENTRAL_UNREACHABLE: "central could not be reached",
    PilotExitCode.WORK_DIR_UNUSABLE: "the work directory cannot be created or written",
    PilotExitCode.BAD_ARGUMENTS: "invalid command-line arguments",
    PilotExitCode.TERMINATED: "pilot terminated by a signal; running jobs were killed",
    PilotExitCode.INTERNAL_ERROR: "pilot crashed on an unexpected error",
}


def describe(code: int) -> str:
    """`code` in words, also for numbers that are not pilot exit codes."""
    try:
        member = PilotExitCode(code)
    except ValueError:
        return f"unknown pilot exit code {code}"
    return f"{member.name}: {member.message}"
