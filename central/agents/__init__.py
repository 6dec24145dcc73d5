"""Central's periodic tasks ("agents"), each a small loop calling central.logic."""

from central.agents.base import PeriodicAgent
from central.agents.failover import failover_agent
from central.agents.heartbeats import heartbeat_flusher
from central.agents.pilots import lost_pilots_agent
from central.agents.stalled import stalled_jobs_agent

__all__ = [
    "PeriodicAgent",
    "failover_agent",
    "heartbeat_flusher",
    "lost_pilots_agent",
    "stalled_jobs_agent",
]
