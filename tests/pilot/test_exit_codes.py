from __future__ import annotations

from pilot.exit_codes import PilotExitCode, describe


def test_every_code_has_a_message_and_a_distinct_number() -> None:
    assert len({int(c) for c in PilotExitCode}) == len(PilotExitCode)
    for code in PilotExitCode:
        assert code.message
    assert int(PilotExitCode.OK) == 0


def test_describe() -> None:
    assert describe(int(PilotExitCode.TERMINATED)).startswith("TERMINATED: ")
    assert describe(99) == "unknown pilot exit code 99"
