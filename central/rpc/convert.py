"""Conversions between proto messages and central's records: the only place that knows both."""

from __future__ import annotations

from central.logic.errors import InvalidArgumentError
from central.logic.jobs import ActionResult, JobDetails, ProjectSummary
from central.logic.pilot_flow import Assignment
from central.logic.pilot_records import QueueDemand
from central.logic.replica_ranking import FileReplicas, RankedReplica
from central.logic.reports import ExitCategory, ReportedOutput
from central.logic.storage_elements import StorageElements
from central.matcher import Resources
from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState
from central.store.records import (
    FailoverRequestRecord,
    HeartbeatRecord,
    HistoryRecord,
    JobFilter,
    JobRecord,
    PilotFilter,
    PilotRecord,
    PilotUpdate,
    QueueStatusRecord,
    SEHealthRecord,
    StorageElementRecord,
)
from gridpilot.enums import (
    job_status_from_proto,
    job_status_to_proto,
    pilot_state_from_proto,
    pilot_state_to_proto,
)
from gridpilot.v1 import (
    common_pb2,
    data_pb2,
    jobs_pb2,
    pilots_pb2,
    sitedirectors_pb2,
)

# ---- enums -------------------------------------------------------------------------------------


def job_status(value: common_pb2.JobStatus.ValueType) -> JobStatus:
    try:
        return job_status_from_proto(value)
    except ValueError as exc:
        raise InvalidArgumentError(f"job status: {exc}") from exc


def pilot_state(value: common_pb2.PilotState.ValueType) -> PilotState:
    try:
        return pilot_state_from_proto(value)
    except ValueError as exc:
        raise InvalidArgumentError(f"pilot state: {exc}") from exc


def exit_category(value: common_pb2.ExitCategory.ValueType) -> ExitCategory:
    name = common_pb2.ExitCategory.Name(value).removeprefix("EXIT_CATEGORY_")
    if name == "UNSPECIFIED":
        raise InvalidArgumentError("exit category is unspecified")
    return ExitCategory[name]


# ---- jobs --------------------------------------------------------------------------------------


def job_filter(selection: jobs_pb2.JobSelection) -> JobFilter:
    return JobFilter(
        project=selection.project,
        owner=selection.owner,
        site=selection.site,
        job_ids=tuple(selection.job_ids),
        statuses=tuple(job_status(s) for s in selection.statuses),
    )


def job_summary(job: JobRecord) -> jobs_pb2.JobSummary:
    return jobs_pb2.JobSummary(
        job_id=job.job_id,
        project=job.project,
        owner=job.owner,
        group=job.group,
        job_name=job.job_name,
        status=job_status_to_proto(job.status),
        minor_status=job.minor_status,
        application_status=job.application_status,
        site=job.site,
        pilot_id=job.pilot_id,
        attempt=job.attempt,
        reschedule_count=job.reschedule_count,
        submitted_unix=job.submitted,
        updated_unix=job.updated,
        output_sandbox=job.output_sandbox,
        priority=job.priority,
        job_type=job.job_type,
    )


def history_entry(h: HistoryRecord) -> common_pb2.HistoryEntry:
    return common_pb2.HistoryEntry(
        status=job_status_to_proto(h.status),
        minor_status=h.minor_status,
        application_status=h.application_status,
        time_unix=h.time,
        source=h.source,
    )


def job_details(details: JobDetails, spec: common_pb2.JobSpec) -> jobs_pb2.GetJobResponse:
    response = jobs_pb2.GetJobResponse(
        job=job_summary(details.job),
        spec=spec,
        history=[history_entry(h) for h in details.history],
        outputs=[
            jobs_pb2.OutputFileInfo(lfn=o.lfn, se=o.se, size=o.size, adler32=o.adler32)
            for o in details.outputs
        ],
    )
    beat = details.heartbeat
    if beat is not None and beat.attempt == details.job.attempt:
        response.last_heartbeat.CopyFrom(
            jobs_pb2.LastHeartbeat(
                time_unix=beat.time,
                cpu_seconds=beat.cpu_seconds,
                wall_seconds=beat.wall_seconds,
                rss_bytes=beat.rss_bytes,
                disk_free_bytes=beat.disk_free_bytes,
                load_average=beat.load_average,
                stdout_tail=list(beat.stdout_tail),
            )
        )
    return response


def action_results(results: list[ActionResult]) -> list[jobs_pb2.JobActionResult]:
    return [jobs_pb2.JobActionResult(job_id=r.job_id, ok=r.ok, message=r.message) for r in results]


def project_summary(s: ProjectSummary) -> jobs_pb2.ProjectSummary:
    return jobs_pb2.ProjectSummary(
        project=s.project,
        owner=s.owner,
        counts=[
            jobs_pb2.StatusCount(status=job_status_to_proto(status), count=count)
            for status, count in sorted(s.counts.items(), key=lambda kv: kv[0].value)
        ],
        submitted_unix=s.first_submitted,
    )


# ---- pilots ------------------------------------------------------------------------------------


def resources(r: common_pb2.ResourceDescription) -> Resources:
    if not r.site:
        raise InvalidArgumentError("resource description without a site")
    return Resources(
        site=r.site,
        ce=r.ce,
        queue=r.queue,
        platform=r.platform,
        cpu_time_left=r.cpu_time_left,
        cores=r.cores,
        memory_mb=r.memory_mb,
        tags=tuple(r.tags),
    )


def matched_job(a: Assignment, job_token: str) -> pilots_pb2.MatchedJob:
    return pilots_pb2.MatchedJob(
        job_id=a.job.job_id,
        attempt=a.job.attempt,
        spec=a.spec,
        output_se=a.output_se,
        failover_ses=a.failover_ses,
        job_token=job_token,
    )


def heartbeat_record(b: pilots_pb2.JobHeartbeat, time: float) -> HeartbeatRecord:
    return HeartbeatRecord(
        job_id=b.job_id,
        attempt=b.attempt,
        time=time,
        cpu_seconds=b.cpu_seconds,
        wall_seconds=b.wall_seconds,
        rss_bytes=b.rss_bytes,
        disk_free_bytes=b.disk_free_bytes,
        load_average=b.load_average,
        stdout_tail=tuple(b.stdout_tail[-20:]),
    )


def reported_output(o: pilots_pb2.OutputFile) -> ReportedOutput:
    return ReportedOutput(
        lfn=o.lfn, se=o.se, size=o.size, adler32=o.adler32, destination_se=o.destination_se
    )


# ---- site directors ----------------------------------------------------------------------------


def pilot_record_in(p: sitedirectors_pb2.PilotRecord) -> PilotRecord:
    state = (
        PilotState.SUBMITTED
        if p.state == common_pb2.PILOT_STATE_UNSPECIFIED
        else pilot_state(p.state)
    )
    return PilotRecord(
        pilot_id=p.pilot_id,
        reference=p.reference,
        site=p.site,
        ce=p.ce,
        queue=p.queue,
        backend=p.backend,
        director=p.director,
        state=state,
        submitted=p.submitted_unix,
        status_reason=p.status_reason,
        log_tail=p.log_tail,
    )


def pilot_record_out(p: PilotRecord) -> sitedirectors_pb2.PilotRecord:
    return sitedirectors_pb2.PilotRecord(
        pilot_id=p.pilot_id,
        reference=p.reference,
        site=p.site,
        ce=p.ce,
        queue=p.queue,
        backend=p.backend,
        director=p.director,
        state=pilot_state_to_proto(p.state),
        submitted_unix=p.submitted,
        registered_unix=p.registered or 0.0,
        last_heartbeat_unix=p.last_heartbeat or 0.0,
        jobs_run=p.jobs_run,
        status_reason=p.status_reason,
        log_tail=p.log_tail,
    )


def pilot_update(u: sitedirectors_pb2.PilotUpdate, time: float) -> PilotUpdate:
    if not u.pilot_id:
        raise InvalidArgumentError("pilot update without a pilot id")
    return PilotUpdate(
        pilot_id=u.pilot_id,
        time=time,
        state=None if u.state == common_pb2.PILOT_STATE_UNSPECIFIED else pilot_state(u.state),
        status_reason=u.status_reason or None,
        log_tail=u.log_tail or None,
        reference=u.reference or None,
    )


def pilot_filter(r: sitedirectors_pb2.ListPilotsRequest) -> PilotFilter:
    if r.limit < 0:
        raise InvalidArgumentError(f"limit {r.limit} is negative")
    return PilotFilter(
        site=r.site,
        queue=r.queue,
        director=r.director,
        states=tuple(pilot_state(s) for s in r.states),
        limit=r.limit,
        pilot_id=r.pilot_id,
    )


def queue_demand(d: QueueDemand) -> sitedirectors_pb2.QueueDemand:
    return sitedirectors_pb2.QueueDemand(
        queue=d.queue,
        eligible_jobs=d.eligible_jobs,
        pilots_submitted=d.pilots_submitted,
        pilots_running=d.pilots_running,
        pilots_idle=d.pilots_idle,
        blocked=d.blocked,
    )


_HEALTH_IN = {
    sitedirectors_pb2.QUEUE_HEALTH_OK: "ok",
    sitedirectors_pb2.QUEUE_HEALTH_FAILING: "failing",
    sitedirectors_pb2.QUEUE_HEALTH_DISABLED: "disabled",
}
_HEALTH_OUT = {text: value for value, text in _HEALTH_IN.items()}


def queue_status_in(q: sitedirectors_pb2.QueueStatus) -> QueueStatusRecord:
    return QueueStatusRecord(
        director="",
        queue=q.queue,
        site=q.site,
        ce=q.ce,
        backend=q.backend,
        # An unset health is caught by the logic's validation, naming the queue.
        health=_HEALTH_IN.get(q.health, ""),
        error=q.error,
        skip_cycles_left=max(0, q.skip_cycles_left),
        failing_since=q.failing_since_unix or None,
        submitted_last_cycle=max(0, q.submitted_last_cycle),
    )


def queue_status_out(q: QueueStatusRecord) -> sitedirectors_pb2.QueueStatus:
    return sitedirectors_pb2.QueueStatus(
        director=q.director,
        queue=q.queue,
        site=q.site,
        ce=q.ce,
        backend=q.backend,
        health=_HEALTH_OUT.get(q.health, sitedirectors_pb2.QUEUE_HEALTH_UNSPECIFIED),
        error=q.error,
        skip_cycles_left=q.skip_cycles_left,
        failing_since_unix=q.failing_since or 0.0,
        submitted_last_cycle=q.submitted_last_cycle,
        reported_unix=q.reported,
    )


# ---- data --------------------------------------------------------------------------------------


def storage_element(se: StorageElementRecord, ses: StorageElements) -> data_pb2.StorageElement:
    read_refusal, write_refusal = ses.read_refusal(se.name), ses.write_refusal(se.name)
    health = ses.health(se.name)
    return data_pb2.StorageElement(
        name=se.name,
        site=se.site,
        protocol=se.url.partition("://")[0],
        url=se.url,
        read_allowed=se.read_allowed,
        write_allowed=se.write_allowed,
        readable=read_refusal is None,
        writable=write_refusal is None,
        read_refusal=read_refusal or "",
        write_refusal=write_refusal or "",
        health=se_health(health) if health is not None else None,
    )


def se_health(h: SEHealthRecord) -> data_pb2.StorageElementHealth:
    return data_pb2.StorageElementHealth(
        available=h.available,
        consecutive_failures=h.consecutive_failures,
        last_probe_unix=h.last_probe,
        last_ok_unix=h.last_ok,
        last_error=h.last_error,
        total_bytes=h.total_bytes,
        free_bytes=h.free_bytes,
        probe_seconds=h.probe_seconds,
    )


def _replica(r: RankedReplica) -> data_pb2.Replica:
    return data_pb2.Replica(
        se=r.se, url=r.url, rank_reason=r.rank_reason, cost=-1.0 if r.cost is None else r.cost
    )


def file_replicas(f: FileReplicas) -> data_pb2.FileReplicas:
    return data_pb2.FileReplicas(
        lfn=f.lfn,
        size=f.size,
        adler32=f.adler32,
        replicas=[_replica(r) for r in f.replicas],
        skipped=[_replica(r) for r in f.skipped],
    )


def failover_request(r: FailoverRequestRecord) -> data_pb2.FailoverRequest:
    return data_pb2.FailoverRequest(
        request_id=r.request_id,
        job_id=r.job_id,
        lfn=r.lfn,
        source_se=r.source_se,
        target_se=r.target_se,
        status=r.status,
        attempts=r.attempts,
        last_error=r.last_error,
        created_unix=r.created,
        updated_unix=r.updated,
        operation=r.operation,
        priority=r.priority,
        owner=r.owner,
        next_try_unix=r.next_try,
    )
