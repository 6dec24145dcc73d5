"""JobService: what gbasf2 and the gb2_job_* commands call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from central.logic import jobs, submission
from central.logic.identity import require_caller
from central.rpc import convert
from gridpilot.v1 import jobs_pb2, jobs_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

Context = grpc.aio.ServicerContext[Any, Any]


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def SubmitJobs(
        self, request: jobs_pb2.SubmitJobsRequest, context: Context
    ) -> jobs_pb2.SubmitJobsResponse:
        c = self.c
        ids = await submission.submit_jobs(
            c.store,
            c.matcher,
            c.config,
            caller=require_caller(),
            specs=request.jobs,
            now=c.clock(),
        )
        return jobs_pb2.SubmitJobsResponse(job_ids=ids)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        found = await jobs.list_jobs(
            self.c.store, require_caller(), convert.job_filter(request.selection), request.limit
        )
        return jobs_pb2.ListJobsResponse(jobs=[convert.job_summary(j) for j in found])

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: Context
    ) -> jobs_pb2.GetJobResponse:
        details = await jobs.get_job(self.c.store, require_caller(), request.job_id)
        spec = submission.decode_spec(details.job.spec, details.job.job_id)
        return convert.job_details(details, spec)

    async def KillJobs(
        self, request: jobs_pb2.KillJobsRequest, context: Context
    ) -> jobs_pb2.KillJobsResponse:
        c = self.c
        results = await jobs.kill_jobs(
            c.store,
            c.matcher,
            c.sessions,
            caller=require_caller(),
            where=convert.job_filter(request.selection),
            now=c.clock(),
        )
        return jobs_pb2.KillJobsResponse(results=convert.action_results(results))

    async def DeleteJobs(
        self, request: jobs_pb2.DeleteJobsRequest, context: Context
    ) -> jobs_pb2.DeleteJobsResponse:
        c = self.c
        results = await jobs.delete_jobs(
            c.store,
            c.matcher,
            caller=require_caller(),
            where=convert.job_filter(request.selection),
            now=c.clock(),
        )
        return jobs_pb2.DeleteJobsResponse(results=convert.action_results(results))

    async def RescheduleJobs(
        self, request: jobs_pb2.RescheduleJobsRequest, context: Context
    ) -> jobs_pb2.RescheduleJobsResponse:
        c = self.c
        results = await jobs.reschedule_jobs(
            c.store,
            c.matcher,
            c.sessions,
            c.config,
            caller=require_caller(),
            where=convert.job_filter(request.selection),
            now=c.clock(),
        )
        return jobs_pb2.RescheduleJobsResponse(results=convert.action_results(results))

    async def SummarizeProjects(
        self, request: jobs_pb2.SummarizeProjectsRequest, context: Context
    ) -> jobs_pb2.SummarizeProjectsResponse:
        summaries = await jobs.summarize_projects(
            self.c.store, require_caller(), request.project, request.owner
        )
        return jobs_pb2.SummarizeProjectsResponse(
            projects=[convert.project_summary(s) for s in summaries]
        )
