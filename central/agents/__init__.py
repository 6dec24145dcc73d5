"""Central's periodic tasks ("agents"), each a small loop calling central.logic."""

from central.agents.base import PeriodicAgent
from central.agents.failover import failover_agent
from central.agents.heartbeats import heartbeat_flusher
from central.agents.pilots import lost_pilots_agent
from central.agents.se_probes import se_probe_agent
from central.agents.security import key_refresh_agent, registration_pruner
from central.agents.stalled import stalled_jobs_agent

__all__ = [
    "PeriodicAgent",
    "failover_agent",
    "heartbeat_flusher",
    "key_refresh_agent",
    "lost_pilots_agent",
    "registration_pruner",
    "se_probe_agent",
    "stalled_jobs_agent",
]
