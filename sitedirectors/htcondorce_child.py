"""One operation of the `htcondorce` backend with an HTCondor-CE, in a process of its own.

Run as `python -m sitedirectors.htcondorce_child` with CONDOR_CONFIG set to the queue's
client configuration (sitedirectors/htcondorce.py explains why every operation gets its own
process); reads a JSON request on stdin, writes a JSON reply on stdout. Imports the HTCondor
bindings itself: the director's process never does.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import json
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from sitedirectors.htcondorce_parse import (
    COMPLETED,
    NATIVE_STATES,
    PROJECTION,
    JobId,
    ads_by_job,
    error_is_refusal,
    error_is_transient,
    jobs_constraint,
    needs_removal,
    removal_reason_for_hold,
)


class _Failure(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def child_main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
        reply = {"ok": True, **_serve(request)}
    except _Failure as exc:
        reply = {"ok": False, "error": str(exc), "transient": exc.transient}
    except Exception as exc:  # the bindings raise HTCondorException, ValueError, RuntimeError
        message = f"{type(exc).__name__}: {exc}".strip()
        reply = {"ok": False, "error": message, "transient": error_is_transient(message)}
    sys.stdout.write(json.dumps(reply))
    return 0


def _serve(request: Mapping[str, Any]) -> dict[str, Any]:
    htcondor: Any = importlib.import_module("htcondor2")
    # The bindings pass submit warnings through `warnings`; the reply is the only output.
    warnings.simplefilter("ignore")
    schedd = _locate(htcondor, request["collector"], request["schedd"])
    handlers: dict[str, Callable[[Any, Any, Mapping[str, Any]], dict[str, Any]]] = {
        "submit": _child_submit,
        "status": _child_status,
        "remove": _child_remove,
        "retrieve": _child_retrieve,
        "release": _child_release,
    }
    return handlers[request["op"]](htcondor, schedd, request)


def _locate(htcondor: Any, collector: str, name: str) -> Any:
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        ads = htcondor.Collector(collector).query(
            htcondor.AdType.Schedd, f"Name == {quoted}", ["Name", "MyAddress", "CondorVersion"]
        )
    except Exception as exc:
        message = f"cannot query the collector: {exc}"
        raise _Failure(message, transient=not error_is_refusal(message)) from exc
    if not ads:
        raise _Failure(f"schedd {name} is not known to the collector", transient=False)
    return htcondor.Schedd(ads[0])


def _jobs(request: Mapping[str, Any], key: str = "jobs") -> list[JobId]:
    return [JobId(int(cluster), int(proc)) for cluster, proc in request.get(key, [])]


def _plain(ad: Any) -> dict[str, Any]:
    """A job ad's projected attributes as JSON values (undefined ones left out)."""
    values: dict[str, Any] = {}
    for name in PROJECTION:
        value = ad.get(name)
        # classad2.Value.Undefined/Error are IntEnum members: not the attribute's value.
        if isinstance(value, bool | int | float | str) and not isinstance(value, enum.Enum):
            values[name] = value
    return values


def _child_submit(htcondor: Any, schedd: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    description = htcondor.Submit(request["description"])
    try:
        result = schedd.submit(description, spool=True, itemdata=iter(request["items"]))
    except Exception as exc:
        message = f"submission refused: {exc}"
        raise _Failure(message, transient=error_is_transient(message)) from exc
    cluster = result.cluster()
    try:
        schedd.spool(result)
    except Exception as exc:
        # Held for spooling, they would never run: remove them before saying so.
        with contextlib.suppress(Exception):
            schedd.act(
                htcondor.JobAction.Remove,
                f"ClusterId == {cluster}",
                reason=("gridpilot: spooling the input files failed", 0),
            )
        message = f"spooling the pilots' input files failed: {exc}"
        raise _Failure(message, transient=not error_is_refusal(message)) from exc
    return {"cluster": cluster, "first_proc": result.first_proc(), "count": result.num_procs()}


def _child_status(htcondor: Any, schedd: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    jobs = _jobs(request)
    ads = [_plain(ad) for ad in schedd.query(jobs_constraint(jobs), PROJECTION)]
    notes: list[str] = []
    for ad in ads:
        if needs_removal(ad):
            held = f"{ad['ClusterId']}.{ad['ProcId']}"
            try:
                reason = (removal_reason_for_hold(ad), 0)
                schedd.act(htcondor.JobAction.Remove, held, reason=reason)
            except Exception as exc:
                notes.append(f"cannot remove held job {held}: {exc}")
    in_queue = ads_by_job(ads)
    missing = [job for job in jobs if job not in in_queue]
    history: list[dict[str, Any]] = []
    history_error = ""
    if missing:
        try:
            found = schedd.history(
                jobs_constraint(missing), PROJECTION, match=len(missing), since=request["since"]
            )
            history = [_plain(ad) for ad in found]
        except Exception as exc:
            history_error = f"cannot read the CE's history: {exc}"
    for job in _jobs(request, "retrieve"):
        done = in_queue.get(job)
        if done is not None and done.get("JobStatus") == COMPLETED:
            try:
                _retrieve_one(schedd, job)
            except Exception as exc:
                notes.append(f"cannot retrieve the output of job {job}: {exc}")
    return {"queue": ads, "history": history, "history_error": history_error, "warnings": notes}


def _child_remove(htcondor: Any, schedd: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    # Completed jobs keep their state (and their output): a finished pilot is not cancelled.
    constraint = f"({jobs_constraint(_jobs(request))}) && JobStatus != 4 && JobStatus != 3"
    result = schedd.act(htcondor.JobAction.Remove, constraint, reason=(request["reason"], 0))
    return {"removed": int(result.get("TotalSuccess", 0)) if result is not None else 0}


def _retrieve_one(schedd: Any, job: JobId) -> None:
    """The job's output into its submit directory; then it may leave the CE's queue."""
    schedd.retrieve(str(job))
    schedd.edit(str(job), "LeaveJobInQueue", "false")


def _child_retrieve(htcondor: Any, schedd: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    for job in _jobs(request):
        ads = schedd.query(jobs_constraint([job]), ["JobStatus"])
        status = ads[0].get("JobStatus") if ads else None
        if status != COMPLETED:
            name = NATIVE_STATES[status][0] if status in NATIVE_STATES else f"JobStatus {status}"
            where = f"is {name}" if ads else "is no longer in the CE's queue"
            raise _Failure(f"job {job} {where}: no output to retrieve", transient=False)
        _retrieve_one(schedd, job)
    return {}


def _child_release(htcondor: Any, schedd: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    constraint = f"({jobs_constraint(_jobs(request))}) && JobStatus == 4"
    # An edit that matches no job is an error to the schedd: edit only those still there.
    if schedd.query(constraint, ["ClusterId", "ProcId"]):
        schedd.edit(constraint, "LeaveJobInQueue", "false")
    return {}


if __name__ == "__main__":
    sys.exit(child_main())
