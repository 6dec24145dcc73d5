"""Follow the demo project live, driving the scripted events (SE outage, a kill) as it goes."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

from central.models.job_states import JobStatus
from gridpilot.enums import job_status_from_proto

if TYPE_CHECKING:
    from gridpilot.demo.cluster import DemoCluster

_ENDED = {JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED, JobStatus.DELETED}
# Keep the outage long enough for several outputs to fail over.
_OUTAGE_MIN_SECONDS = 12.0


@dataclass
class FollowOutcome:
    killed_job: int | None = None
    problems: list[str] = field(default_factory=list)


def _render(counts: Counter[str], total: int, events: list[str], elapsed: float) -> Table:
    table = Table(title=f"demo01: {total} jobs, {elapsed:.0f} s", show_header=True)
    table.add_column("Status")
    table.add_column("Jobs", justify="right")
    table.add_column("", min_width=20)
    for status in JobStatus:
        n = counts.get(status.value, 0)
        if n:
            table.add_row(status.value, str(n), "█" * round(20 * n / max(total, 1)))
    for event in events[-4:]:
        table.add_row("", "", f"[dim]{event}[/]")
    return table


def follow_project(
    cluster: DemoCluster,
    project: str,
    *,
    job_ids: list[int],
    outage_se: str,
    deadline: float,
    console: Console,
) -> FollowOutcome:
    outcome = FollowOutcome()
    events: list[str] = []
    start = time.monotonic()
    cluster.take_se_offline(outage_se)
    events.append(f"{outage_se} down")
    outage_until: float | None = None
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            jobs = cluster.list_jobs(project)
            statuses = {j.job_id: job_status_from_proto(j.status) for j in jobs}
            counts = Counter(s.value for s in statuses.values())
            live.update(_render(counts, len(job_ids), events, time.monotonic() - start))

            if outcome.killed_job is None:
                running = sorted(i for i, s in statuses.items() if s is JobStatus.RUNNING)
                if running:
                    victim = running[-1]
                    code = cluster.run_cli("gb2_job_kill", ["-j", str(victim), "--force"])
                    if code != 0:
                        outcome.problems.append(f"gb2_job_kill exited {code}")
                    outcome.killed_job = victim
                    events.append(f"killed job {victim} with gb2_job_kill")

            if outage_until is None and cluster.failover_requests():
                outage_until = time.monotonic() + _OUTAGE_MIN_SECONDS
                events.append("first output went to the failover SE")
            all_ended = len(statuses) == len(job_ids) and all(
                s in _ENDED or s is JobStatus.COMPLETED for s in statuses.values()
            )
            outage_over = outage_until is not None and time.monotonic() > outage_until
            if (outage_over or all_ended) and cluster.se_is_offline(outage_se):
                cluster.bring_se_online(outage_se)
                events.append(f"{outage_se} back: failover requests can complete")

            if all_ended and all(s in _ENDED for s in statuses.values()):
                break
            if time.monotonic() > deadline:
                outcome.problems.append("jobs did not finish before the deadline")
                break
            time.sleep(1.0)
    return outcome
