"""The SLURM backend's pure parsers, on output captured from the real SLURM 22.05 daemons of
tests/support/slurm.py (MinJobAge keeps finished jobs visible).

Captures: a job that exited 3, one cancelled with scancel, one completed, and a 6-task job
array (--array=0-5) of which four tasks run and two are still pending as one record.
"""

from __future__ import annotations

import pytest

from central.models.pilot_states import PilotState
from sitedirectors.slurm_parse import (
    NATIVE_STATES,
    VANISHED,
    NativeJob,
    SlurmReference,
    expand_task_ids,
    is_unknown_job_error,
    parse_reference,
    parse_sacct,
    parse_sbatch_output,
    parse_scontrol_jobs,
    parse_squeue_json,
    sbatch_error_is_transient,
    sbatch_error_message,
    to_status,
)
from sitedirectors.slurm_script import ArrayTask, render_array_script, render_single_script

# `squeue --json --me --states=all` (22.05 ignores the filters with --json); each job record
# trimmed from ~100 fields to those the parser reads.
SQUEUE_JSON = """\
{"meta": {"plugin": {"type": "openapi\\/v0.0.38", "name": "Slurm OpenAPI v0.0.38"},
          "Slurm": {"version": {"major": 22, "micro": 8, "minor": 5}, "release": "22.05.8"}},
 "errors": [],
 "jobs": [
  {"job_id": 1, "array_job_id": 0, "array_task_id": null, "array_task_string": "",
   "job_state": "FAILED", "state_reason": "NonZeroExitCode", "exit_code": 768},
  {"job_id": 2, "array_job_id": 0, "array_task_id": null, "array_task_string": "",
   "job_state": "CANCELLED", "state_reason": "None", "exit_code": 15},
  {"job_id": 3, "array_job_id": 0, "array_task_id": null, "array_task_string": "",
   "job_state": "COMPLETED", "state_reason": "None", "exit_code": 0},
  {"job_id": 5, "array_job_id": 4, "array_task_id": 0, "array_task_string": "",
   "job_state": "RUNNING", "state_reason": "None", "exit_code": 0},
  {"job_id": 6, "array_job_id": 4, "array_task_id": 1, "array_task_string": "",
   "job_state": "RUNNING", "state_reason": "None", "exit_code": 0},
  {"job_id": 7, "array_job_id": 4, "array_task_id": 2, "array_task_string": "",
   "job_state": "RUNNING", "state_reason": "None", "exit_code": 0},
  {"job_id": 8, "array_job_id": 4, "array_task_id": 3, "array_task_string": "",
   "job_state": "RUNNING", "state_reason": "None", "exit_code": 0},
  {"job_id": 4, "array_job_id": 4, "array_task_id": null, "array_task_string": "4-5",
   "job_state": "PENDING", "state_reason": "Resources", "exit_code": 0}
 ]}
"""

# `squeue --json` with the controller down: exit status 0, an error inside.
SQUEUE_JSON_CONTROLLER_DOWN = """\
{
  "meta": {
    "plugin": {
      "type": "openapi\\/v0.0.38",
      "name": "Slurm OpenAPI v0.0.38"
    },
    "Slurm": {
      "version": {
        "major": 22,
        "micro": 8,
        "minor": 5
      },
      "release": "22.05.8"
    }
  },
  "errors": [
    {
      "description": "Failed while looking for jobs",
      "error_number": -1,
      "error": "Unspecified error",
      "source": "slurm_load_jobs"
    }
  ],
  "jobs": [
  ]
}
"""

# `scontrol show job 1` (exit 3), verbatim.
SCONTROL_FAILED = """\
JobId=1 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901759 Nice=0 Account=(null) QOS=(null)
   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0
   RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A
   SubmitTime=2026-11-25T13:09:10 EligibleTime=2026-11-25T13:09:10
   AccrueTime=2026-11-25T13:09:10
   StartTime=2026-11-25T13:09:12 EndTime=2026-11-25T13:09:12 Deadline=N/A
   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-25T13:09:12 Scheduler=Main
   Partition=debug AllocNode:Sid=localhost:17447
   ReqNodeList=(null) ExcNodeList=(null)
   NodeList=localhost
   BatchHost=localhost
   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=1,node=1,billing=1
   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
   Features=(null) DelayBoot=00:00:00
   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
   Command=(null)
   WorkDir=/work/main
   StdErr=/dev/null
   StdIn=/dev/null
   StdOut=/dev/null
   Power=
"""

# `scontrol show job 2` (scancel), first lines of the record.
SCONTROL_CANCELLED = """\
JobId=2 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901758 Nice=0 Account=(null) QOS=(null)
   JobState=CANCELLED Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15
"""

# `scontrol show job 4` (the array): the pending rest first, then each started task; first
# lines of each record.
SCONTROL_ARRAY = """\
JobId=4 ArrayJobId=4 ArrayTaskId=4-5 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901756 Nice=0 Account=(null) QOS=(null)
   JobState=PENDING Reason=Resources Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0

JobId=8 ArrayJobId=4 ArrayTaskId=3 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901756 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0

JobId=7 ArrayJobId=4 ArrayTaskId=2 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901756 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0

JobId=6 ArrayJobId=4 ArrayTaskId=1 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901756 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0

JobId=5 ArrayJobId=4 ArrayTaskId=0 JobName=gridpilot-q
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901756 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
"""

SCONTROL_UNKNOWN_STDERR = "slurm_load_jobs error: Invalid job id specified\n"
SBATCH_PARSABLE = "1\n"
SBATCH_BAD_PARTITION = (
    "sbatch: error: invalid partition specified: nosuch\n"
    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
)
SBATCH_CONTROLLER_DOWN = (
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
    "(connect failure)\n"
)
SACCT_WITHOUT_ACCOUNTING = "Slurm accounting storage is disabled\n"


# ---- references and sbatch -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("7", SlurmReference("7")),
        ("12_0", SlurmReference("12", "0")),
        ("4_15", SlurmReference("4", "15")),
    ],
)
def test_parse_reference(reference: str, expected: SlurmReference) -> None:
    assert parse_reference(reference) == expected
    assert str(parse_reference(reference)) == reference


@pytest.mark.parametrize("reference", ["", "x", "0", "12_", "_3", "12_a", "1;rm", "12:abc", "-1"])
def test_parse_reference_rejects(reference: str) -> None:
    with pytest.raises(ValueError, match="not a slurm backend reference"):
        parse_reference(reference)


def test_parse_sbatch_output() -> None:
    assert parse_sbatch_output(SBATCH_PARSABLE) == "1"
    # With a federation or -M, --parsable adds the cluster.
    assert parse_sbatch_output("4242;gridpilot\n") == "4242"
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch_output("")
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch_output("Submitted batch job 12\n")


def test_sbatch_errors_are_classified() -> None:
    assert not sbatch_error_is_transient(SBATCH_BAD_PARTITION)
    assert sbatch_error_is_transient(SBATCH_CONTROLLER_DOWN)
    assert sbatch_error_is_transient("sbatch: error: Slurm temporarily unable to accept job")
    assert sbatch_error_is_transient(
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
    )
    assert not sbatch_error_is_transient(
        "sbatch: error: Batch job submission failed: Invalid account or account/partition "
        "combination specified"
    )
    assert not sbatch_error_is_transient("sbatch: error: Invalid qos specification")
    # Anything not known to pass later fails the queue visibly.
    assert not sbatch_error_is_transient("sbatch: error: something new")


def test_sbatch_error_message_puts_the_summary_first() -> None:
    assert sbatch_error_message(SBATCH_BAD_PARTITION, 1) == (
        "sbatch: error: Batch job submission failed: Invalid partition name specified; "
        "sbatch: error: invalid partition specified: nosuch"
    )
    assert sbatch_error_message("", 1) == "sbatch exited with 1 and printed nothing"


def test_unknown_job_error() -> None:
    assert is_unknown_job_error(SCONTROL_UNKNOWN_STDERR)
    # `scontrol show job 1_0` after the pending task 0 of array 1 was cancelled (stdout).
    assert is_unknown_job_error("Job 1_0 not found\n")
    assert not is_unknown_job_error(
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    )


@pytest.mark.parametrize(
    ("spec", "tasks"),
    [
        ("4-5", ["4", "5"]),
        ("3", ["3"]),
        ("0,2,5-7", ["0", "2", "5", "6", "7"]),
        ("0-6:3", ["0", "3", "6"]),
        ("2-4%1", ["2", "3", "4"]),
    ],
)
def test_expand_task_ids(spec: str, tasks: list[str]) -> None:
    assert expand_task_ids(spec) == tasks


def test_expand_task_ids_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an array task list"):
        expand_task_ids("1-x")


# ---- squeue and scontrol -----------------------------------------------------------------------


def test_parse_squeue_json() -> None:
    jobs = parse_squeue_json(SQUEUE_JSON)
    assert set(jobs) == {"1", "2", "3", "4_0", "4_1", "4_2", "4_3", "4_4", "4_5"}
    assert jobs["1"] == NativeJob("FAILED", "NonZeroExitCode", exit_status=3)
    assert jobs["2"] == NativeJob("CANCELLED", "", exit_status=None, signal=15)
    assert jobs["3"] == NativeJob("COMPLETED", "", exit_status=0)
    assert jobs["4_2"].state == "RUNNING"
    # The pending rest of the array is one record: each task gets its state.
    assert jobs["4_4"] == jobs["4_5"] == NativeJob("PENDING", "Resources", exit_status=0)


def test_parse_squeue_json_controller_down() -> None:
    with pytest.raises(ValueError, match="Failed while looking for jobs"):
        parse_squeue_json(SQUEUE_JSON_CONTROLLER_DOWN)


@pytest.mark.parametrize("text", ["", "squeue: error: ...", '{"jobs": 3}', "[]"])
def test_parse_squeue_json_rejects_other_output(text: str) -> None:
    with pytest.raises(ValueError, match="squeue"):
        parse_squeue_json(text)


def test_parse_squeue_json_of_later_versions() -> None:
    """From 23.02 on: job_state is a list of flags, numbers and exit codes are structured."""
    text = """\
{"jobs": [
 {"job_id": 9, "array_job_id": {"set": true, "infinite": false, "number": 0},
  "array_task_id": {"set": false, "infinite": false, "number": 0}, "array_task_string": "",
  "job_state": ["FAILED"], "state_reason": "NonZeroExitCode",
  "exit_code": {"status": ["ERROR"], "return_code": {"set": true, "number": 3},
                "signal": {"id": {"set": false, "number": 0}, "name": ""}}},
 {"job_id": 11, "array_job_id": {"set": true, "number": 10},
  "array_task_id": {"set": true, "number": 1}, "array_task_string": "",
  "job_state": ["CANCELLED"], "state_reason": "None",
  "exit_code": {"status": ["SIGNALED"], "return_code": {"set": true, "number": 0},
                "signal": {"id": {"set": true, "number": 15}, "name": "TERM"}}}
], "warnings": [], "errors": []}
"""
    jobs = parse_squeue_json(text)
    assert jobs == {
        "9": NativeJob("FAILED", "NonZeroExitCode", exit_status=3),
        "10_1": NativeJob("CANCELLED", "", exit_status=0, signal=15),
    }


def test_parse_scontrol_jobs() -> None:
    assert parse_scontrol_jobs(SCONTROL_FAILED) == {
        "1": NativeJob("FAILED", "NonZeroExitCode", exit_status=3)
    }
    assert parse_scontrol_jobs(SCONTROL_CANCELLED) == {
        "2": NativeJob("CANCELLED", "", exit_status=0, signal=15)
    }
    array = parse_scontrol_jobs(SCONTROL_ARRAY)
    assert set(array) == {f"4_{t}" for t in range(6)}
    assert array["4_5"] == NativeJob("PENDING", "Resources", exit_status=0)
    assert array["4_0"] == NativeJob("RUNNING", "", exit_status=0)
    assert parse_scontrol_jobs("") == {}


def test_parse_sacct() -> None:
    # No accounting on the test cluster (SACCT_WITHOUT_ACCOUNTING): this is the documented
    # `sacct -n -P -X -o JobID,State,ExitCode` format.
    assert "accounting storage is disabled" in SACCT_WITHOUT_ACCOUNTING
    text = "12|COMPLETED|0:0\n13_1|CANCELLED by 0|0:15\n14|FAILED|3:0\n15_[2-3]|PENDING|0:0\n"
    assert parse_sacct(text) == {
        "12": NativeJob("COMPLETED", exit_status=0),
        "13_1": NativeJob("CANCELLED", exit_status=0, signal=15),
        "14": NativeJob("FAILED", exit_status=3),
        "15_2": NativeJob("PENDING", exit_status=0),
        "15_3": NativeJob("PENDING", exit_status=0),
    }


# ---- the state table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("native", "state", "exit_code", "reason"),
    [
        (NativeJob("PENDING", "Resources"), PilotState.WAITING, None, "pending: Resources"),
        (NativeJob("CONFIGURING"), PilotState.WAITING, None, ""),
        (NativeJob("SUSPENDED"), PilotState.WAITING, None, ""),
        (NativeJob("REQUEUED"), PilotState.WAITING, None, ""),
        (NativeJob("RUNNING", exit_status=0), PilotState.RUNNING, 0, ""),
        (NativeJob("COMPLETING"), PilotState.RUNNING, None, ""),
        (NativeJob("COMPLETED", exit_status=0), PilotState.DONE, 0, ""),
        (NativeJob("COMPLETED", exit_status=2), PilotState.FAILED, 2, "exited with code 2"),
        (NativeJob("FAILED", exit_status=3), PilotState.FAILED, 3, "pilot exited with code 3"),
        (NativeJob("FAILED", signal=9), PilotState.FAILED, 137, "killed by signal 9"),
        (NativeJob("TIMEOUT", signal=15), PilotState.FAILED, 143, "time limit"),
        (NativeJob("OUT_OF_MEMORY"), PilotState.FAILED, None, "out of memory"),
        (NativeJob("NODE_FAIL"), PilotState.FAILED, None, "node failure"),
        (NativeJob("BOOT_FAIL"), PilotState.FAILED, None, "boot"),
        (NativeJob("DEADLINE"), PilotState.FAILED, None, "deadline"),
        (NativeJob("CANCELLED", signal=15), PilotState.ABORTED, 143, "cancelled"),
        (NativeJob("PREEMPTED"), PilotState.ABORTED, None, "preempted"),
        (NativeJob(VANISHED), PilotState.ABORTED, None, "job vanished from the batch system"),
        (NativeJob("FROBNICATED"), PilotState.UNKNOWN, None, "FROBNICATED"),
    ],
)
def test_to_status(
    native: NativeJob, state: PilotState, exit_code: int | None, reason: str
) -> None:
    status = to_status(native)
    assert status.state is state
    assert status.exit_code == exit_code
    assert reason in status.reason
    assert status.native == native.state


def test_the_table_covers_squeue_states_of_the_captures() -> None:
    for job in parse_squeue_json(SQUEUE_JSON).values():
        assert job.state in NATIVE_STATES


# ---- batch scripts ---------------------------------------------------------------------------


def test_single_script_runs_the_start_script() -> None:
    script = render_single_script("p1", "/w/pilots/p1")
    assert script.startswith("#!/bin/sh\n")
    assert script.rstrip().endswith("exec /bin/sh /w/pilots/p1/start.sh")


def test_array_script_maps_tasks_to_pilots() -> None:
    script = render_array_script(
        [ArrayTask("a", "/w/pilots/a"), ArrayTask("b", "/w/pilots/it's b")]
    )
    assert "    0) dir=/w/pilots/a ;;" in script
    assert """    1) dir='/w/pilots/it'"'"'s b' ;;""" in script
    assert 'exec >>"$dir/pilot.log" 2>&1' in script
    with pytest.raises(ValueError, match="at least one"):
        render_array_script([])
