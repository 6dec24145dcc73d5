"""The htcondorce backend's pure parts: the state table on job ads captured from a real schedd
(HTCondor 23.9, queried with the 25.x bindings through the backend's own projection), the
references, the options, the submit description and the sorting of HTCondor's errors."""

from __future__ import annotations

from typing import Any

import pytest

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendConfigError, PilotQueue
from sitedirectors.htcondorce_parse import (
    NATIVE_STATES,
    PROJECTION,
    VANISHED,
    CondorReference,
    JobId,
    ads_by_job,
    client_config,
    convert_options,
    error_is_transient,
    history_since,
    jobs_constraint,
    needs_removal,
    parse_reference,
    redact,
    removal_reason_for_hold,
    submit_description,
    submit_item,
    to_status,
    vanished,
)

# ---- captured ads (tests/support/htcondor.py's schedd; see the module docstring) ----------------

# fmt: off
SPOOLING = {"ClusterId": 1, "ProcId": 0, "JobStatus": 5, "HoldReason": "Spooling input data files", "HoldReasonCode": 16, "ExitBySignal": False, "EnteredCurrentStatus": 1796517183, "GridpilotPilotId": "done"}  # noqa: E501
IDLE = {"ClusterId": 2, "ProcId": 0, "JobStatus": 1, "LastJobStatus": 5, "ExitBySignal": False, "EnteredCurrentStatus": 1796517185, "GridpilotPilotId": "idle"}  # noqa: E501
RUNNING = {"ClusterId": 1, "ProcId": 3, "JobStatus": 2, "LastJobStatus": 1, "ExitBySignal": False, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "hold"}  # noqa: E501
COMPLETED_OK = {"ClusterId": 1, "ProcId": 0, "JobStatus": 4, "LastJobStatus": 2, "ExitCode": 0, "ExitBySignal": False, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "done"}  # noqa: E501
COMPLETED_3 = {"ClusterId": 1, "ProcId": 1, "JobStatus": 4, "LastJobStatus": 2, "ExitCode": 3, "ExitBySignal": False, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "exit3"}  # noqa: E501
KILLED_9 = {"ClusterId": 1, "ProcId": 2, "JobStatus": 4, "LastJobStatus": 2, "ExitBySignal": True, "ExitSignal": 9, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "signal"}  # noqa: E501
HELD_BY_ADMIN = {"ClusterId": 1, "ProcId": 3, "JobStatus": 5, "LastJobStatus": 2, "HoldReason": "held by the CE admin (by user condor)", "HoldReasonCode": 1, "HoldReasonSubCode": 0, "ExitBySignal": True, "ExitSignal": 15, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "hold"}  # noqa: E501
# From the history: removed by the backend (cancel), by the CE's admin, and after a hold.
CANCELLED = {"ClusterId": 1, "ProcId": 4, "JobStatus": 3, "LastJobStatus": 2, "RemoveReason": "gridpilot: cancelled by the site director (by user griduser)", "ExitBySignal": True, "ExitSignal": 15, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "cancel"}  # noqa: E501
REMOVED_BY_ADMIN = {"ClusterId": 1, "ProcId": 5, "JobStatus": 3, "LastJobStatus": 2, "RemoveReason": "removed by the CE admin (by user condor)", "ExitBySignal": True, "ExitSignal": 15, "EnteredCurrentStatus": 1796517188, "GridpilotPilotId": "adminrm"}  # noqa: E501
REMOVED_AFTER_HOLD = {"ClusterId": 1, "ProcId": 3, "JobStatus": 3, "LastJobStatus": 5, "RemoveReason": "gridpilot: held: held by the CE admin (by user condor) (HoldReasonCode 1) (by user griduser)", "ExitBySignal": True, "ExitSignal": 15, "EnteredCurrentStatus": 1796517192, "GridpilotPilotId": "hold"}  # noqa: E501
# fmt: on

QUEUE = PilotQueue(name="kek-ce", site="LCG.KEK.jp", ce="ce01", slots=4, memory_mb=8000, cpu_time=1)
BASE = {"collector": "ce01.kek.jp", "token_file": "/etc/gridpilot/ce.token"}


# ---- the state table ---------------------------------------------------------------------------


def test_every_job_status_has_a_pilot_state() -> None:
    assert sorted(NATIVE_STATES) == [1, 2, 3, 4, 5, 6, 7]
    assert {name for name, _ in NATIVE_STATES.values()} >= {"Idle", "Running", "Held"}


@pytest.mark.parametrize(
    ("ad", "state", "native", "exit_code", "reason"),
    [
        (SPOOLING, PilotState.WAITING, "Held", None, "spooling input files to the CE"),
        (IDLE, PilotState.WAITING, "Idle", None, ""),
        (RUNNING, PilotState.RUNNING, "Running", None, ""),
        (COMPLETED_OK, PilotState.DONE, "Completed", 0, ""),
        (COMPLETED_3, PilotState.FAILED, "Completed", 3, "pilot exited with code 3"),
        (KILLED_9, PilotState.FAILED, "Completed", 137, "pilot killed by signal 9"),
        (
            HELD_BY_ADMIN,
            PilotState.FAILED,
            "Held",
            None,
            "held by the CE: held by the CE admin (by user condor) (HoldReasonCode 1)",
        ),
        (
            CANCELLED,
            PilotState.ABORTED,
            "Removed",
            None,
            "cancelled by the site director (condor_rm)",
        ),
        (
            REMOVED_BY_ADMIN,
            PilotState.ABORTED,
            "Removed",
            None,
            "removed from the CE: removed by the CE admin (by user condor)",
        ),
        (
            REMOVED_AFTER_HOLD,
            PilotState.FAILED,
            "Removed",
            None,
            "held by the CE: held by the CE admin (by user condor) (HoldReasonCode 1)",
        ),
    ],
)
def test_captured_ads(
    ad: dict[str, Any], state: PilotState, native: str, exit_code: int | None, reason: str
) -> None:
    status = to_status(ad)
    assert (status.state, status.native, status.exit_code, status.reason) == (
        state,
        native,
        exit_code,
        reason,
    )


def test_transferring_output_suspended_and_unknown() -> None:
    assert to_status({**RUNNING, "JobStatus": 6}).state is PilotState.RUNNING
    suspended = to_status({**RUNNING, "JobStatus": 7})
    assert (suspended.state, suspended.reason) == (PilotState.WAITING, "suspended by the CE")
    odd = to_status({**RUNNING, "JobStatus": 42})
    assert odd.state is PilotState.UNKNOWN
    assert "42" in odd.reason
    assert to_status({}).state is PilotState.UNKNOWN


def test_only_real_holds_are_removed_and_keep_their_reason() -> None:
    assert needs_removal(HELD_BY_ADMIN)
    assert not needs_removal(SPOOLING)
    assert not needs_removal(RUNNING)
    reason = removal_reason_for_hold(HELD_BY_ADMIN)
    assert reason == "gridpilot: held: held by the CE admin (by user condor) (HoldReasonCode 1)"
    # The schedd appends who removed it; what the history then says maps back to the hold.
    back = to_status({**HELD_BY_ADMIN, "JobStatus": 3, "RemoveReason": reason})
    assert back.state is PilotState.FAILED
    assert back.reason == to_status(HELD_BY_ADMIN).reason


def test_vanished() -> None:
    gone = vanished()
    assert (gone.state, gone.native) == (PilotState.ABORTED, VANISHED)
    assert "vanished" in gone.reason


def test_ads_by_job_keeps_the_newest() -> None:
    found = ads_by_job([REMOVED_AFTER_HOLD, HELD_BY_ADMIN, {"JobStatus": 1}])
    assert list(found) == [JobId(1, 3)]
    assert found[JobId(1, 3)] is REMOVED_AFTER_HOLD


def test_projection_covers_the_parser() -> None:
    for ad in (SPOOLING, HELD_BY_ADMIN, CANCELLED, KILLED_9, COMPLETED_3):
        assert set(ad) <= set(PROJECTION)


# ---- references and constraints ---------------------------------------------------------------


def test_references() -> None:
    ref = parse_reference("ce-test@vm#12.3")
    assert ref == CondorReference("ce-test@vm", JobId(12, 3))
    assert str(ref) == "ce-test@vm#12.3"
    assert parse_reference("ce01.kek.jp#1.0").schedd == "ce01.kek.jp"
    for bad in ("12.3", "ce#12", "ce#0.1", "ce/x#1.2", "#1.2", "not-a-reference"):
        with pytest.raises(ValueError, match="not an htcondorce backend reference"):
            parse_reference(bad)


def test_jobs_constraint() -> None:
    jobs = [JobId(7, 2), JobId(5, 0), JobId(7, 0), JobId(7, 2)]
    assert jobs_constraint(jobs) == (
        "(ClusterId == 5 && ProcId == 0) || (ClusterId == 7 && member(ProcId, {0, 2}))"
    )
    assert jobs_constraint([]) == "false"
    assert history_since(1000.9, 600) == "EnteredCurrentStatus < 400"


# ---- options -----------------------------------------------------------------------------------


def test_option_defaults() -> None:
    options = convert_options(BASE, "q")
    assert (options.collector, options.schedd) == ("ce01.kek.jp:9619", "ce01.kek.jp")
    assert options.auth_methods == "IDTOKENS,SCITOKENS"
    assert (options.universe, options.batch_size, options.max_wall) == ("vanilla", 100, 0)
    assert (options.timeout, options.vanish_grace, options.history_lookback) == (60, 120, 86400)
    named = convert_options({"schedd": "ce02.kek.jp", "token_file": "/t"}, "q")
    assert named.collector == "ce02.kek.jp:9619"
    both = convert_options(
        {**BASE, "collector": "127.0.0.1:3911", "schedd": "ce-test@vm", "auth_methods": "idtokens"},
        "q",
    )
    assert (both.collector, both.schedd, both.auth_methods) == (
        "127.0.0.1:3911",
        "ce-test@vm",
        "IDTOKENS",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({**BASE, "bogus": 1}, r"queues\[q\]\.backend_options.*bogus"),
        ({"token_file": "/t"}, r"backend_options\.collector: required"),
        ({**BASE, "collector": "ce01:99999"}, r"backend_options\.collector must be host\[:port\]"),
        ({**BASE, "collector": "http://ce01"}, r"backend_options\.collector"),
        ({"collector": "ce01"}, r"backend_options\.token_file: required"),
        ({**BASE, "token_file": "ce.token"}, r"backend_options\.token_file must be an absolute"),
        ({**BASE, "schedd": "a b"}, r"backend_options\.schedd is not a schedd name"),
        ({**BASE, "universe": "grid"}, r"backend_options\.universe must be \"vanilla\""),
        ({**BASE, "batch_size": 0}, r"backend_options\.batch_size must be at least 1"),
        ({**BASE, "max_wall": -1}, r"backend_options\.max_wall must be at least 0"),
        ({**BASE, "timeout": 0}, r"backend_options\.timeout must be positive"),
        ({**BASE, "history_lookback": "long"}, r"history_lookback"),
        ({**BASE, "auth_methods": "PASSWORD"}, r"backend_options\.auth_methods"),
        ({**BASE, "extra_submit": {"executable": "x"}}, r"extra_submit\.executable is set by"),
        ({**BASE, "extra_submit": {"a b": "x"}}, r"extra_submit: 'a b' is not a submit"),
        ({**BASE, "extra_submit": {"+X": "1\nqueue 100"}}, r"extra_submit\.\+X must be a one"),
        ({**BASE, "extra_submit": {"+X": [1]}}, r"extra_submit"),
        ({**BASE, "bundle_url": "ftp://x/b.tgz"}, r"backend_options\.bundle_url must be a URL"),
        (
            {**BASE, "bundle_url": "https://x/b.tgz", "bundle_path": "/cvmfs/b.tgz"},
            "bundle_url and bundle_path exclude each other",
        ),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendConfigError, match=message):
        convert_options(options, "q")


# ---- the submit description ------------------------------------------------------------------


def test_submit_description() -> None:
    options = convert_options(
        {
            **BASE,
            "max_wall": 90,
            "extra_submit": {"+ProjectName": '"belle"', "accounting_group": "belle.prod"},
        },
        "q",
    )
    description = submit_description(options, QUEUE, "start.sh", "pilot.log")
    assert description["universe"] == "vanilla"
    assert description["executable"] == "$(gridpilot_dir)/start.sh"
    assert description["initialdir"] == "$(gridpilot_dir)"
    assert description["transfer_input_files"] == "$(gridpilot_inputs)"
    assert description["should_transfer_files"] == "YES"
    assert description["transfer_output_files"] == '""'
    assert description["output"] == description["error"] == "pilot.log"
    assert (description["request_cpus"], description["request_memory"]) == ("4", "8000")
    assert description["+GridpilotQueue"] == '"kek-ce"'
    assert description["+GridpilotPilotId"] == '"$(gridpilot_pilot)"'
    assert (description["+maxWallTime"], description["allowed_execute_duration"]) == ("90", "5400")
    assert description["+ProjectName"] == '"belle"'
    assert description["accounting_group"] == "belle.prod"
    for forbidden in ("arguments", "environment", "getenv"):
        assert forbidden not in description
    plain = submit_description(convert_options(BASE, "q"), QUEUE, "start.sh", "pilot.log")
    assert "allowed_execute_duration" not in plain


def test_submit_item() -> None:
    item = submit_item("/w/pilots/p1", "p1", ["ca.pem", "registration.token", "/b/x.tar.gz"])
    assert item == {
        "gridpilot_dir": "/w/pilots/p1",
        "gridpilot_pilot": "p1",
        "gridpilot_inputs": "ca.pem, registration.token, /b/x.tar.gz",
    }
    with pytest.raises(ValueError, match="unusable in a submit description"):
        submit_item("/w/pilots/p1", "p1", ["/bundles/a,b.tar.gz"])


# ---- errors and secrets ------------------------------------------------------------------------

AUTH_REFUSED = (
    "submission refused: Failed to connect to schedd, errmsg=AUTHENTICATE:1003:Failed to "
    "authenticate with any method|AUTHENTICATE:1004:Failed to authenticate using IDTOKENS"
)
BAD_REQUIREMENTS = (
    "submission refused: Failed to create job ad, errmsg=Submit:-1:Parse error in expression: "
    '\n\tRequirements = (((() && (TARGET.Arch == "X86_64")'
)


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        (AUTH_REFUSED, False),
        (BAD_REQUIREMENTS, False),
        ("schedd ce-nosuch is not known to the collector", False),
        ("cannot query the collector: Failed communication with collector.", True),
        (
            "spooling the pilots' input files failed: DCSchedd::spoolJobFiles:7002:File transfer "
            "failed for target job 3.0",
            True,
        ),
        ("something nobody expected", False),
    ],
)
def test_error_is_transient(message: str, transient: bool) -> None:
    assert error_is_transient(message) is transient


def test_redact_and_client_config() -> None:
    token = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.eyJpYXQiOjE3OTY1MTYxMzl9.c2lnbmF0dXJl"
    assert redact(f"token {token} refused") == "token <token> refused"
    text = client_config("q", "IDTOKENS,SCITOKENS", "/w/client/q/tokens", "/w/client/q/empty")
    assert "SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS,SCITOKENS\n" in text
    assert "SEC_TOKEN_DIRECTORY = /w/client/q/tokens\n" in text
    assert "SCITOKENS_FILE = /w/client/q/tokens/token\n" in text
    assert "SEC_PASSWORD_FILE = /w/client/q/empty/none\n" in text
