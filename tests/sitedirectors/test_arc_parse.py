"""The arc backend's pure parts on answers captured from a real A-REX 6.17 (REST 1.0, fork
LRMS): the state table, the answer parsers, the xRSL builder and the job wrapper."""

from __future__ import annotations

import pytest

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from sitedirectors.arc_parse import (
    NATIVE_STATES,
    InputFile,
    JobDescription,
    is_gone,
    is_job_id,
    is_safe_name,
    job_ids_body,
    parse_entries,
    parse_info,
    parse_new_jobs,
    parse_status,
    render_submission,
    render_xrsl,
    submit_error_is_transient,
    to_status,
)

JOB_A = "D1NKDmA6EuAoOSAtDmABFKDmABFKDmABFKDmgdHKDmABFKDmJbfKFm"
JOB_B = "OHgKDmA6EuAoOSAtDmABFKDmABFKDmABFKDmgdHKDmBBFKDmIUrVin"

# ---- captured answers --------------------------------------------------------------------------

NEW_ONE = (
    '{"job":{"status-code":"201","reason":"Created","id":"' + JOB_A + '","state":"ACCEPTING"}}'
)
NEW_TWO = (
    '{"job":[{"status-code":"201","reason":"Created","id":"' + JOB_A + '","state":"ACCEPTING"},'
    '{"status-code":"201","reason":"Created","id":"' + JOB_B + '","state":"ACCEPTING"}]}'
)
NEW_BAD_QUEUE = (
    '{"job":{"status-code":"500","reason":"Requested queue nosuch is not allowed for this user"}}'
)
NEW_MIXED = (
    '{"job":[{"status-code":"500","reason":"Requested queue nosuch is not allowed for this user"},'
    '{"status-code":"201","reason":"Created","id":"' + JOB_B + '","state":"ACCEPTING"}]}'
)
NEW_BAD_XRSL = (
    '{"job":{"status-code":"500","reason":"nordugrid:xrsl parsing error:\\n'
    'Relation operator expected"}}'
)
STATUS = (
    '{"job":[{"status-code":"200","reason":"OK","id":"' + JOB_A + '","state":"FAILED"},'
    '{"status-code":"200","reason":"OK","id":"' + JOB_B + '","state":"ACCEPTED"},'
    '{"status-code":"404","reason":"Job not found","id":"nosuchjob","state":"None"}]}'
)
STATUS_ONE = '{"job":{"status-code":"200","reason":"OK","id":"' + JOB_A + '","state":"FINISHED"}}'
KILL = (
    '{"job":[{"status-code":"202","reason":"Queued for killing","id":"' + JOB_A + '"},'
    '{"status-code":"404","reason":"Job not found","id":"nosuchjobid123"}]}'
)
INFO_404 = (
    '{"job":{"status-code":"404","reason":"Job not found","id":"nosuchjobid123",'
    '"info_document":""}}'
)
INFO_FAILED = (
    '{"job":{"status-code":"200","reason":"OK","id":"' + JOB_A + '","info_document":'
    '{"ComputingActivity":{"ID":"urn:caid:localhost:org.nordugrid.arcrest:' + JOB_A + '",'
    '"Name":"gp-test","OtherInfo":"SubmittedVia=org.nordugrid.arcrest","Type":"single",'
    '"JobDescription":"nordugrid:xrsl","State":["nordugrid:FAILED::INLRMS","file:inlrms",'
    '"bes:Failed","arcrest:FAILED","emies:terminal","emiesattr:processing-failure"],'
    '"RestartState":["nordugrid:INLRMS","file:inlrms","bes:Running","arcrest:OTHER",'
    '"emies:processing-running","emiesattr:app-running"],"ExitCode":"3",'
    '"Error":"LRMS error: (3) Job finished with wrong exit code - 3 != 0",'
    '"Owner":"/DC=org/DC=nordugrid/DC=ARC/O=TestCA/CN=pilot","LocalOwner":"griduser",'
    '"RequestedTotalWallTime":"10","RequestedSlots":"1","Queue":"fork",'
    '"Associations":{"ComputingShareID":"urn:ogf:ComputingShare:localhost:fork"},'
    '"_attributes":{"BaseType":"  ","CreationTime":"  ","Validity":"  "}}}}}'
)
INFO_KILLED_AND_RUNNING = (
    '{"job":[{"status-code":"200","reason":"OK","id":"' + JOB_A + '","info_document":'
    '{"ComputingActivity":{"State":["nordugrid:KILLED::INLRMS","file:killed","bes:Cancelled",'
    '"arcrest:KILLED","emies:terminal","emiesattr:processing-cancel"],'
    '"Error":"Job is canceled by external request","LocalOwner":"griduser"}}},'
    '{"status-code":"200","reason":"OK","id":"' + JOB_B + '","info_document":'
    '{"ComputingActivity":{"LocalIDFromManager":"14318","State":["nordugrid:INLRMS:EXECUTED",'
    '"file:inlrms","bes:Running","arcrest:EXITINGLRMS","emies:processing-running"]}}}]}'
)
INFO_FINISHED = (
    '{"job":{"status-code":"200","reason":"OK","id":"' + JOB_A + '","info_document":'
    '{"ComputingActivity":{"Name":"gridpilot-p1","State":["nordugrid:FINISHED",'
    '"file:finished","bes:Finished","arcrest:FINISHED","emies:terminal",'
    '"emiesattr:client-stageout-possible"],"ExitCode":"0","Queue":"fork"}}}}'
)


# ---- the state table ---------------------------------------------------------------------------


def test_every_rest_state_is_mapped() -> None:
    rest_states = {
        "ACCEPTING", "ACCEPTED", "PREPARING", "PREPARED", "SUBMITTING", "QUEUING", "RUNNING",
        "HELD", "EXITINGLRMS", "OTHER", "EXECUTED", "FINISHING", "FINISHED", "FAILED",
        "KILLING", "KILLED",
    }  # fmt: skip
    assert rest_states <= NATIVE_STATES.keys()
    assert NATIVE_STATES["ACCEPTED"] is PilotState.SUBMITTED
    assert NATIVE_STATES["QUEUING"] is PilotState.WAITING
    assert NATIVE_STATES["KILLING"] is PilotState.RUNNING
    finals = {s for s, p in NATIVE_STATES.items() if p in FINAL_PILOT_STATES}
    assert finals == {"FINISHED", "FAILED", "KILLED"}


@pytest.mark.parametrize(
    ("native", "exit_code", "state", "reason"),
    [
        ("ACCEPTED", None, PilotState.SUBMITTED, ""),
        ("RUNNING", None, PilotState.RUNNING, ""),
        ("FINISHED", 0, PilotState.DONE, ""),
        ("FINISHED", None, PilotState.DONE, ""),
        ("FINISHED", 2, PilotState.FAILED, "pilot exited with code 2"),
        ("FAILED", 3, PilotState.FAILED, "pilot exited with code 3 (ARC: boom)"),
        ("FAILED", None, PilotState.FAILED, "ARC: boom"),
        ("KILLED", None, PilotState.ABORTED, "killed on the CE (boom)"),
        ("VANISHED", None, PilotState.ABORTED, "job vanished from the CE"),
        ("SOMETHING", None, PilotState.UNKNOWN, "unknown ARC job state 'SOMETHING'"),
    ],
)
def test_to_status(native: str, exit_code: int | None, state: PilotState, reason: str) -> None:
    status = to_status(native, exit_code=exit_code, error="boom")
    assert status.state is state
    assert status.exit_code == exit_code
    assert reason in status.reason


def test_killed_by_the_director_says_cancelled() -> None:
    status = to_status("KILLED", cancelled=True)
    assert status.state is PilotState.ABORTED
    assert "cancelled" in status.reason


# ---- answers -----------------------------------------------------------------------------------


def test_new_answers_one_or_several() -> None:
    [one] = parse_new_jobs(NEW_ONE, 1)
    assert (one.job_id, one.code, one.ok, one.state) == (JOB_A, 201, True, "ACCEPTING")
    assert [e.job_id for e in parse_new_jobs(NEW_TWO, 2)] == [JOB_A, JOB_B]
    refused, created = parse_new_jobs(NEW_MIXED, 2)
    assert (refused.ok, refused.job_id, created.job_id) == (False, "", JOB_B)
    assert "not allowed" in refused.reason
    [bad] = parse_new_jobs(NEW_BAD_XRSL, 1)
    assert bad.code == 500
    assert "parsing error" in bad.reason
    with pytest.raises(ValueError, match="answered for 1 jobs, 2 were submitted"):
        parse_new_jobs(NEW_BAD_QUEUE, 2)
    with pytest.raises(ValueError, match="no JSON"):
        parse_new_jobs("<html>", 1)


def test_status_answers() -> None:
    statuses = parse_status(STATUS)
    assert statuses[JOB_A].state == "FAILED"
    assert statuses[JOB_B].state == "ACCEPTED"
    assert is_gone(statuses["nosuchjob"])
    assert not is_gone(statuses[JOB_A])
    assert parse_status(STATUS_ONE)[JOB_A].state == "FINISHED"
    # A-REX answers an empty list with an empty body.
    assert parse_status("") == {}


def test_kill_answer() -> None:
    queued, unknown = parse_entries(KILL, "action=kill")
    assert (queued.code, queued.ok) == (202, True)
    assert (unknown.code, unknown.ok) == (404, False)


def test_info_answers() -> None:
    failed = parse_info(INFO_FAILED)[JOB_A]
    assert (failed.state, failed.exit_code) == ("FAILED", 3)
    assert failed.error == "LRMS error: (3) Job finished with wrong exit code - 3 != 0"
    infos = parse_info(INFO_KILLED_AND_RUNNING)
    assert (infos[JOB_A].state, infos[JOB_A].exit_code) == ("KILLED", None)
    assert infos[JOB_A].error == "Job is canceled by external request"
    assert infos[JOB_B].state == "EXITINGLRMS"
    assert parse_info(INFO_FINISHED)[JOB_A].exit_code == 0
    assert parse_info(INFO_404)["nosuchjobid123"].code == 404


def test_transient_refusals() -> None:
    assert submit_error_is_transient("No more jobs allowed")
    assert not submit_error_is_transient("Requested queue nosuch is not allowed for this user")
    assert not submit_error_is_transient("nordugrid:xrsl parsing error")


def test_ids_and_names() -> None:
    assert is_job_id(JOB_A)
    assert not is_job_id("not-a-reference")
    assert not is_job_id("../etc")
    assert is_safe_name("gridpilot-pilot-abc.tar.gz")
    assert is_safe_name("APPS/HEP/BELLE-1.0")
    assert not is_safe_name('x") (executable="evil')
    assert not is_safe_name("a/../b")
    assert job_ids_body([JOB_A]) == b'{"job": [{"id": "' + JOB_A.encode() + b'"}]}'


# ---- what a submission carries -----------------------------------------------------------------


def description(**fields: object) -> JobDescription:
    settings: dict[str, object] = {
        "executable": "run.sh",
        "inputs": (InputFile("run.sh"), InputFile("b.tar.gz", "https://h/b.tar.gz")),
        "log_file": "pilot.log",
        "job_name": "gridpilot-p1",
        **fields,
    }
    return JobDescription(**settings)  # type: ignore[arg-type]


def test_xrsl() -> None:
    assert render_xrsl(description()) == (
        '&(executable="run.sh")(inputfiles=("run.sh" "")("b.tar.gz" "https://h/b.tar.gz"))'
        '(outputfiles=("pilot.log" ""))(stdout="pilot.log")(stderr="pilot.log")'
        '(jobname="gridpilot-p1")(count="1")'
    )
    full = render_xrsl(
        description(
            queue="grid",
            walltime_minutes=90,
            memory_mb=2000,
            count=8,
            runtime_environments=("ENV/PROXY",),
            job_name='say "hi"',
        )
    )
    assert full.endswith(
        '(jobname="say ""hi""")(count="8")(queue="grid")(walltime="PT90M")(memory="2000")'
        '(runtimeenvironment="ENV/PROXY")'
    )


def test_several_descriptions_are_one_multi_job_xrsl() -> None:
    one = render_xrsl(description())
    assert render_submission([description()]) == one
    assert render_submission([description(), description()]) == f"+({one})({one})"
    with pytest.raises(ValueError, match="nothing"):
        render_submission([])
