"""Pure formatting of central's answers: rich tables, gbasf2-style summaries, JSON-ready dicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState
from gridpilot.cli.common import format_size, format_time
from gridpilot.enums import job_status_from_proto, pilot_state_from_proto
from gridpilot.v1 import common_pb2, data_pb2, jobs_pb2, sitedirectors_pb2

# What gbasf2 always shows in its summary line, even at zero; other states only when present.
SUMMARY_STATUSES: tuple[JobStatus, ...] = (
    JobStatus.COMPLETED,
    JobStatus.DELETED,
    JobStatus.DONE,
    JobStatus.FAILED,
    JobStatus.KILLED,
    JobStatus.RUNNING,
    JobStatus.WAITING,
)
UNKNOWN = "Unknown"


def status_name(value: common_pb2.JobStatus.ValueType) -> str:
    try:
        return job_status_from_proto(value).value
    except ValueError:
        return UNKNOWN


def pilot_state_name(value: common_pb2.PilotState.ValueType) -> str:
    try:
        return pilot_state_from_proto(value).value
    except ValueError:
        return PilotState.UNKNOWN.value


# ---- jobs --------------------------------------------------------------------------------------


def job_to_dict(job: jobs_pb2.JobSummary) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "project": job.project,
        "owner": job.owner,
        "group": job.group,
        "job_name": job.job_name,
        "status": status_name(job.status),
        "minor_status": job.minor_status,
        "application_status": job.application_status,
        "site": job.site,
        "pilot_id": job.pilot_id,
        "attempt": job.attempt,
        "reschedule_count": job.reschedule_count,
        "priority": job.priority,
        "job_type": job.job_type,
        "submitted_unix": job.submitted_unix,
        "updated_unix": job.updated_unix,
        "output_sandbox": job.output_sandbox,
    }


def jobs_table(jobs: Sequence[jobs_pb2.JobSummary]) -> Table:
    table = Table(title=None, show_lines=False)
    for column in ("JobID", "Owner", "Status", "MinorStatus", "ApplicationStatus", "Site"):
        table.add_column(column, justify="right" if column == "JobID" else "left")
    table.add_column("LastUpdate (UTC)", no_wrap=True)
    for job in jobs:
        table.add_row(
            str(job.job_id),
            job.owner,
            status_name(job.status),
            job.minor_status,
            job.application_status,
            job.site or "-",
            format_time(job.updated_unix),
        )
    return table


def status_counts(jobs: Iterable[jobs_pb2.JobSummary]) -> Counter[str]:
    return Counter(status_name(job.status) for job in jobs)


def summary_lines(jobs: Sequence[jobs_pb2.JobSummary]) -> list[str]:
    """gbasf2's footer: counts per status, then how many jobs the selection holds."""
    if not jobs:
        return ["0 jobs are selected."]
    counts = status_counts(jobs)
    names = [s.value for s in SUMMARY_STATUSES]
    others = sorted(name for name in counts if name not in names)
    cells = [f"{name}:{counts.get(name, 0)}" for name in sorted([*names, *others])]
    noun = "job is" if len(jobs) == 1 else "jobs are"
    return [
        "--- Summary of Selected Jobs ---",
        "  ".join(cells),
        f"{len(jobs)} {noun} selected.",
    ]


# ---- projects ----------------------------------------------------------------------------------


def project_counts(project: jobs_pb2.ProjectSummary) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for item in project.counts:
        counts[status_name(item.status)] += item.count
    return dict(counts)


def project_to_dict(project: jobs_pb2.ProjectSummary) -> dict[str, Any]:
    counts = project_counts(project)
    return {
        "project": project.project,
        "owner": project.owner,
        "submitted_unix": project.submitted_unix,
        "total": sum(counts.values()),
        "counts": counts,
    }


def projects_table(projects: Sequence[jobs_pb2.ProjectSummary]) -> Table:
    """One row per project; a column per status that any project has, in life-cycle order."""
    per_project = [project_counts(p) for p in projects]
    present = {name for counts in per_project for name in counts}
    columns: list[str] = [s.value for s in JobStatus if s.value in present]
    if UNKNOWN in present:
        columns.append(UNKNOWN)
    table = Table()
    table.add_column("Project")
    table.add_column("Owner")
    table.add_column("Submitted (UTC)", no_wrap=True)
    table.add_column("Total", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    for project, counts in zip(projects, per_project, strict=True):
        table.add_row(
            project.project,
            project.owner,
            format_time(project.submitted_unix),
            str(sum(counts.values())),
            *(str(counts.get(name, 0)) for name in columns),
        )
    return table


# ---- datasets and storage ----------------------------------------------------------------------


def replica_cost(r: data_pb2.Replica) -> float | None:
    """Seconds per GB from the site asked about; None when nothing is known (-1 on the wire)."""
    return r.cost if r.cost >= 0 else None


def replica_to_dict(r: data_pb2.Replica) -> dict[str, Any]:
    return {"se": r.se, "url": r.url, "rank_reason": r.rank_reason, "cost": replica_cost(r)}


def file_to_dict(f: data_pb2.FileReplicas) -> dict[str, Any]:
    """A file, its replicas best first and the copies that may not be read now (and why)."""
    return {
        "lfn": f.lfn,
        "size": f.size,
        "adler32": f.adler32,
        "replicas": [replica_to_dict(r) for r in f.replicas],
        "skipped": [replica_to_dict(r) for r in f.skipped],
    }


def dataset_table(files: Sequence[data_pb2.FileReplicas]) -> Table:
    table = Table()
    table.add_column("LFN", overflow="fold")
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Adler32", no_wrap=True)
    table.add_column("SEs")
    for f in files:
        table.add_row(f.lfn, format_size(f.size), f.adler32, ", ".join(r.se for r in f.replicas))
    return table


def replicas_heading(f: data_pb2.FileReplicas) -> str:
    # Not the table's title: rich wraps a title to the table's width, and LFNs are long.
    return f"{f.lfn}  ({format_size(f.size)}, adler32 {f.adler32})"


def replicas_table(f: data_pb2.FileReplicas) -> Table:
    """The order a job would try the copies in (and why), then the skipped ones (and why)."""
    table = Table()
    table.add_column("Rank", justify="right")
    table.add_column("SE")
    table.add_column("Cost (s/GB)", justify="right")
    table.add_column("Why")
    for rank, r in enumerate(f.replicas, start=1):
        cost = replica_cost(r)
        table.add_row(str(rank), r.se, "-" if cost is None else f"{cost:.3g}", r.rank_reason)
    for r in f.skipped:
        table.add_row("skipped", r.se, "-", r.rank_reason)
    return table


def _health_to_dict(se: data_pb2.StorageElement) -> dict[str, Any] | None:
    if not se.HasField("health"):
        return None  # never probed
    h = se.health
    return {
        "available": h.available,
        "consecutive_failures": h.consecutive_failures,
        "last_probe_unix": h.last_probe_unix,
        "last_ok_unix": h.last_ok_unix,
        "last_error": h.last_error,
        "total_bytes": h.total_bytes,
        "free_bytes": h.free_bytes,
        "probe_seconds": h.probe_seconds,
    }


def se_to_dict(se: data_pb2.StorageElement) -> dict[str, Any]:
    return {
        "name": se.name,
        "site": se.site,
        "protocol": se.protocol,
        "url": se.url,
        "read_allowed": se.read_allowed,
        "write_allowed": se.write_allowed,
        "readable": se.readable,
        "writable": se.writable,
        "read_refusal": se.read_refusal,
        "write_refusal": se.write_refusal,
        "health": _health_to_dict(se),
    }


def _access(ok: bool, allowed: bool, refusal: str, se: data_pb2.StorageElement) -> str:
    """ "yes", or "no (why)" in a word: the admin's switch, failing probes, a full SE."""
    if ok:
        return "yes"
    if not allowed:
        why = "disabled"
    elif se.HasField("health") and not se.health.available:
        why = "unavailable"
    elif refusal.startswith("full"):
        why = "full"
    else:
        why = refusal.partition(":")[0] or "refused"
    return f"[red]no[/red] ({escape(why)})"


def se_occupancy(se: data_pb2.StorageElement) -> str:
    """ "used / total (NN%)" as the SE last reported it; "-" when it did not."""
    if not se.HasField("health"):
        return "-"
    total, free = se.health.total_bytes, se.health.free_bytes
    if total <= 0 or free < 0:
        return "-"
    used = max(total - free, 0)
    return f"{format_size(used)} / {format_size(total)} ({used / total:.0%})"


def se_table(ses: Sequence[data_pb2.StorageElement]) -> Table:
    table = Table()
    for column in ("Name", "Site", "Protocol", "Read", "Write", "Available"):
        table.add_column(column)
    table.add_column("Last probe (UTC)", no_wrap=True)
    table.add_column("Failures", justify="right")
    table.add_column("Occupancy", justify="right", no_wrap=True)
    for se in ses:
        probed = se.HasField("health") and se.health.last_probe_unix > 0
        if not se.HasField("health"):
            available = "-"
        else:
            available = "yes" if se.health.available else "[red]no[/red]"
        table.add_row(
            se.name,
            se.site,
            se.protocol,
            _access(se.readable, se.read_allowed, se.read_refusal, se),
            _access(se.writable, se.write_allowed, se.write_refusal, se),
            available,
            format_time(se.health.last_probe_unix) if probed else "never",
            str(se.health.consecutive_failures) if se.HasField("health") else "-",
            se_occupancy(se),
        )
    return table


# ---- pilots ------------------------------------------------------------------------------------


def pilot_to_dict(p: sitedirectors_pb2.PilotRecord) -> dict[str, Any]:
    return {
        "pilot_id": p.pilot_id,
        "reference": p.reference,
        "site": p.site,
        "ce": p.ce,
        "queue": p.queue,
        "backend": p.backend,
        "director": p.director,
        "state": pilot_state_name(p.state),
        "submitted_unix": p.submitted_unix,
        "registered_unix": p.registered_unix,
        "last_heartbeat_unix": p.last_heartbeat_unix,
        "jobs_run": p.jobs_run,
        "status_reason": p.status_reason,
        "log_tail": p.log_tail,
    }


def pilots_table(pilots: Sequence[sitedirectors_pb2.PilotRecord]) -> Table:
    table = Table()
    for column in ("PilotID", "Site", "CE", "Queue", "Backend", "State", "Jobs"):
        table.add_column(column, justify="right" if column == "Jobs" else "left")
    table.add_column("Submitted (UTC)", no_wrap=True)
    table.add_column("LastHeartbeat (UTC)", no_wrap=True)
    table.add_column("Reason")
    for p in pilots:
        table.add_row(
            p.pilot_id,
            p.site,
            p.ce,
            p.queue,
            p.backend,
            pilot_state_name(p.state),
            str(p.jobs_run),
            format_time(p.submitted_unix),
            format_time(p.last_heartbeat_unix),
            p.status_reason,
        )
    return table


def pilot_summary_line(pilots: Sequence[sitedirectors_pb2.PilotRecord]) -> str:
    counts = Counter(pilot_state_name(p.state) for p in pilots)
    cells = [f"{s.value}:{counts[s.value]}" for s in PilotState if counts.get(s.value)]
    return f"{len(pilots)} pilot(s)" + (f" — {'  '.join(cells)}" if cells else "")


_HEALTH_NAMES = {
    sitedirectors_pb2.QUEUE_HEALTH_OK: "ok",
    sitedirectors_pb2.QUEUE_HEALTH_FAILING: "failing",
    sitedirectors_pb2.QUEUE_HEALTH_DISABLED: "disabled",
}


def queue_to_dict(q: sitedirectors_pb2.QueueStatus) -> dict[str, Any]:
    return {
        "director": q.director,
        "queue": q.queue,
        "site": q.site,
        "ce": q.ce,
        "backend": q.backend,
        "state": _HEALTH_NAMES.get(q.health, "unknown"),
        "error": q.error,
        "skip_cycles_left": q.skip_cycles_left,
        "failing_since_unix": q.failing_since_unix,
        "submitted_last_cycle": q.submitted_last_cycle,
        "reported_at": q.reported_unix,
    }


def queues_table(queues: Sequence[sitedirectors_pb2.QueueStatus]) -> Table:
    table = Table()
    for column in ("Director", "Queue", "Site", "CE", "Backend", "State"):
        table.add_column(column)
    table.add_column("Skip", justify="right")
    table.add_column("Submitted", justify="right")
    table.add_column("Reported (UTC)", no_wrap=True)
    table.add_column("Error")
    for q in queues:
        state = _HEALTH_NAMES.get(q.health, "unknown")
        table.add_row(
            q.director,
            q.queue,
            q.site,
            q.ce,
            q.backend,
            f"[red]{state}[/red]" if state == "failing" else state,
            str(q.skip_cycles_left),
            str(q.submitted_last_cycle),
            format_time(q.reported_unix),
            q.error,
        )
    return table
