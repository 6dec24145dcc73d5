"""`gridpilot bench matcher`: durable matches/s of a real central against the machine's ceiling.

Steps: start central (TLS + tokens) → one timed bulk SubmitJobs call → prefill the rest in
batches → RSS → echo baseline (same client, same TLS) → pilots: sessions heartbeating and a
closed loop RequestJob → Running → FinishJob(Done) → check no job lost or matched twice →
restart time.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import psutil

from gridpilot.bench import workload
from gridpilot.bench.central_proc import (
    MAX_MESSAGE_BYTES,
    QUEUE,
    BenchCentral,
    bench_config,
    ce_name,
    site_name,
)
from gridpilot.bench.echo import echo_main
from gridpilot.bench.loadgen import PilotSpec, WorkerResult, WorkerTask, worker_main
from gridpilot.channel import ClientSecurity, open_sync_channel
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc

READY_TIMEOUT = 300.0
PREFILL_BATCH = 10_000


class Options(msgspec.Struct, kw_only=True):
    jobs: int = 1_000_000
    queues: int = 200
    sites: int = 50
    groups: int = 5
    pilots: int = 2_000
    heartbeat_period: float = 10.0
    concurrency: int = 64
    duration: float = 60.0
    echo_duration: float = 15.0
    bulk_jobs: int = 100_000
    workers: int = 2
    work_dir: str = ""


QUICK = Options(
    jobs=20_000,
    queues=40,
    sites=10,
    groups=5,
    pilots=100,
    heartbeat_period=1.0,
    concurrency=32,
    duration=8.0,
    echo_duration=4.0,
    bulk_jobs=5_000,
)


class Result(msgspec.Struct, kw_only=True):
    options: Options
    matches: int = 0
    matches_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    no_match_replies: int = 0
    echo_rpc_per_s: float = 0.0
    ratio_to_echo: float = 0.0
    heartbeats_per_s: float = 0.0
    sessions_opened: int = 0
    session_retries: int = 0
    central_rss_bytes: int = 0
    bytes_per_waiting_job: float = 0.0
    restart_s: float = 0.0
    bulk_submit_jobs: int = 0
    bulk_submit_s: float = 0.0
    prefill_jobs_per_s: float = 0.0
    duplicated_matches: int = 0
    lost_jobs: int = 0
    errors: int = 0
    error_samples: list[str] = []
    problems: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _run_workers(tasks: list[WorkerTask]) -> list[WorkerResult]:
    """Start one process per task, release them together once all are ready, collect."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs: list[tuple[Any, multiprocessing.connection.Connection]] = []
    for task in tasks:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(msgspec.msgpack.encode(task), go, child))
        proc.start()
        child.close()
        procs.append((proc, parent))
    results: list[WorkerResult] = []
    early: dict[int, bytes] = {}
    try:
        for index, (_proc, conn) in enumerate(procs):
            if not conn.poll(READY_TIMEOUT):
                raise RuntimeError(f"load worker {index} not ready in {READY_TIMEOUT} s")
            message = conn.recv_bytes()
            if message != b"ready":
                early[index] = message  # it failed before the start
        go.set()
        timeout = max(t.duration for t in tasks) + READY_TIMEOUT
        for index, (_proc, conn) in enumerate(procs):
            if index in early:
                message = early[index]
            elif conn.poll(timeout):
                message = conn.recv_bytes()
            else:
                raise RuntimeError(f"load worker {index} gave no result")
            results.append(msgspec.msgpack.decode(message, type=WorkerResult))
    finally:
        for proc, conn in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
            conn.close()
    return results


def _split(count: int, parts: int) -> list[int]:
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _echo_rate(central: BenchCentral, options: Options) -> tuple[float, list[str]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=echo_main, args=(str(central.server_cert), str(central.server_key), child)
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError("echo server did not start")
        port = parent.recv()
        tasks = [
            WorkerTask(
                mode="echo",
                target=f"127.0.0.1:{port}",
                ca_path=str(central.ca_path),
                concurrency=c,
                duration=options.echo_duration,
            )
            for c in _split(options.concurrency, options.workers)
            if c
        ]
        results = _run_workers(tasks)
    finally:
        parent.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    calls = sum(r.echo_calls for r in results)
    elapsed = max(r.elapsed for r in results) or 1.0
    return calls / elapsed, [s for r in results for s in r.error_samples]


def _pilot_tasks(central: BenchCentral, options: Options) -> list[WorkerTask]:
    pilots = [
        PilotSpec(
            registration_token=central.registration_token(i % options.sites),
            site=site_name(i % options.sites),
            ce=ce_name(i % options.sites),
            queue=QUEUE,
        )
        for i in range(options.pilots)
    ]
    tasks: list[WorkerTask] = []
    for w, concurrency in enumerate(_split(options.concurrency, options.workers)):
        share = pilots[w :: options.workers]
        if not share:
            continue
        tasks.append(
            WorkerTask(
                mode="pilots",
                target=central.target,
                ca_path=str(central.ca_path),
                pilots=share,
                concurrency=concurrency,
                duration=options.duration,
                heartbeat_period=options.heartbeat_period,
            )
        )
    return tasks


def _prefill(central: BenchCentral, options: Options, result: Result) -> int:
    all_shapes = workload.shapes(options.queues, options.sites, options.groups)
    tokens = {s.owner: central.user_token(s.owner, s.group) for s in all_shapes}
    security = ClientSecurity(tls=ClientTls(ca=central.ca_path), token=None)
    channel = open_sync_channel(central.target, security, options=_big_messages())
    submitted = 0
    try:
        submitter = workload.Submitter(channel, tokens)
        bulk = min(options.bulk_jobs, options.jobs)
        if bulk:
            # One project, one call, one owner: the "bulk submission" figure.
            specs = [workload.spec(all_shapes[0], k) for k in range(bulk)]
            submitted, result.bulk_submit_s = submitter.submit(all_shapes[0], specs)
            result.bulk_submit_jobs = submitted
        started = time.perf_counter()
        rest = options.jobs - submitted
        for shape, specs in workload.batches(all_shapes, rest, PREFILL_BATCH, start=submitted):
            submitted += submitter.submit(shape, specs)[0]
        if rest:
            result.prefill_jobs_per_s = rest / (time.perf_counter() - started)
    finally:
        channel.close()
    return submitted


def _big_messages() -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def _check_jobs(central: BenchCentral, submitted: int, matched: list[int], result: Result) -> None:
    """Every submitted job is in the store once; every matched job is Done, matched once."""
    duplicates = [job for job, n in Counter(matched).items() if n > 1]
    result.duplicated_matches = len(duplicates)
    if duplicates:
        result.problems.append(f"{len(duplicates)} jobs matched twice, e.g. {duplicates[:5]}")
    security = ClientSecurity(tls=ClientTls(ca=central.ca_path), token=None)
    channel = open_sync_channel(central.target, security, options=_big_messages())
    try:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        auth = (("authorization", f"Bearer {central.admin_token()}"),)
        summary = stub.SummarizeProjects(
            jobs_pb2.SummarizeProjectsRequest(project=workload.PROJECT), metadata=auth, timeout=300
        )
        counts: Counter[int] = Counter()
        for project in summary.projects:
            for count in project.counts:
                counts[count.status] += count.count
        total = sum(counts.values())
        done = stub.ListJobs(
            jobs_pb2.ListJobsRequest(
                selection=jobs_pb2.JobSelection(
                    project=workload.PROJECT, statuses=[common_pb2.JOB_STATUS_DONE]
                )
            ),
            metadata=auth,
            timeout=300,
        )
    finally:
        channel.close()
    done_ids = {job.job_id for job in done.jobs}
    not_done = set(matched) - done_ids
    # A job Done that no pilot of this run reported would be a match the client never saw.
    unseen = done_ids - set(matched)
    result.lost_jobs = abs(submitted - total) + len(not_done)
    if total != submitted:
        result.problems.append(f"store holds {total} jobs, {submitted} were submitted")
    if not_done:
        result.problems.append(
            f"{len(not_done)} matched jobs are not Done, e.g. {sorted(not_done)[:5]}"
        )
    if unseen:
        result.problems.append(f"{len(unseen)} jobs are Done but were never handed to a pilot")
    waiting = counts[common_pb2.JOB_STATUS_WAITING]
    if waiting + len(done_ids) != total:
        other = {
            common_pb2.JobStatus.Name(common_pb2.JobStatus.ValueType(s)): n
            for s, n in counts.items()
            if s not in (common_pb2.JOB_STATUS_WAITING, common_pb2.JOB_STATUS_DONE)
        }
        result.problems.append(f"jobs neither Waiting nor Done: {other}")


def run(options: Options) -> Result:
    """Run the whole benchmark; `Result.problems` lists lost/duplicated jobs and errors."""
    result = Result(options=options)
    with tempfile.TemporaryDirectory(prefix="gridpilot-bench-") as tmp:
        work_dir = Path(options.work_dir or tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        config = bench_config(
            work_dir,
            sites=options.sites,
            groups=options.groups,
            heartbeat_period=options.heartbeat_period,
        )
        central = BenchCentral(work_dir, config)
        central.start()
        try:
            rss_before = psutil.Process(central.pid).memory_info().rss
            submitted = _prefill(central, options, result)
            result.central_rss_bytes = psutil.Process(central.pid).memory_info().rss
            if submitted:
                result.bytes_per_waiting_job = (result.central_rss_bytes - rss_before) / submitted
            echo_rate, echo_errors = _echo_rate(central, options)
            result.echo_rpc_per_s = echo_rate
            worker_results = _run_workers(_pilot_tasks(central, options))
            matched = [j for r in worker_results for j in r.matched]
            latencies = [x for r in worker_results for x in r.latencies]
            elapsed = max(r.elapsed for r in worker_results) or options.duration
            result.matches = len(matched)
            result.matches_per_s = len(matched) / elapsed
            result.p50_ms = 1000 * _percentile(latencies, 0.50)
            result.p99_ms = 1000 * _percentile(latencies, 0.99)
            result.no_match_replies = sum(r.no_match for r in worker_results)
            result.heartbeats_per_s = sum(r.heartbeats for r in worker_results) / elapsed
            result.sessions_opened = sum(r.sessions for r in worker_results)
            result.session_retries = sum(r.session_retries for r in worker_results)
            result.errors = sum(r.errors for r in worker_results)
            result.error_samples = [s for r in worker_results for s in r.error_samples]
            result.error_samples += echo_errors
            if echo_rate:
                result.ratio_to_echo = result.matches_per_s / echo_rate
            if result.errors:
                result.problems.append(
                    f"{result.errors} RPC errors, e.g. {result.error_samples[:2]}"
                )
            if result.sessions_opened != options.pilots:
                result.problems.append(
                    f"{result.sessions_opened} of {options.pilots} pilot sessions opened"
                )
            if not matched and submitted:
                result.problems.append("no job was matched")
            _check_jobs(central, submitted, matched, result)
            central.stop()
            started = time.perf_counter()
            central.start()
            _check_serving(central)
            result.restart_s = time.perf_counter() - started
        except Exception:
            tail = central.log_tail()
            if tail:
                result.error_samples.append("central log tail:\n" + tail)
            raise
        finally:
            central.stop()
    return result


def _check_serving(central: BenchCentral) -> None:
    security = ClientSecurity(tls=ClientTls(ca=central.ca_path), token=None)
    channel = open_sync_channel(central.target, security)
    try:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        stub.ListJobs(
            jobs_pb2.ListJobsRequest(limit=1),
            metadata=(("authorization", f"Bearer {central.admin_token()}"),),
            timeout=120,
            wait_for_ready=True,
        )
    finally:
        channel.close()
