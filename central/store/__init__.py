"""Central's durable state behind one narrow interface (`Store`), one implementation per engine.

No SQL leaves this package. Every method is one transaction, committed before it returns.
"""

from central.store.interface import Store
from central.store.records import (
    BanRecord,
    FailoverRequestRecord,
    FileRecord,
    HeartbeatRecord,
    HistoryRecord,
    JobFilter,
    JobRecord,
    JobScope,
    NewFailoverRequest,
    NewJob,
    OutputRecord,
    PilotFilter,
    PilotRecord,
    PilotUpdate,
    ReplicaRecord,
    RevocationRecord,
    SandboxRecord,
    SECostRecord,
    SEHealthRecord,
    StatusCountRecord,
    StorageElementRecord,
    Transition,
    WaitingJob,
)

__all__ = [
    "BanRecord",
    "FailoverRequestRecord",
    "FileRecord",
    "HeartbeatRecord",
    "HistoryRecord",
    "JobFilter",
    "JobRecord",
    "JobScope",
    "NewFailoverRequest",
    "NewJob",
    "OutputRecord",
    "PilotFilter",
    "PilotRecord",
    "PilotUpdate",
    "ReplicaRecord",
    "RevocationRecord",
    "SECostRecord",
    "SEHealthRecord",
    "SandboxRecord",
    "StatusCountRecord",
    "StorageElementRecord",
    "Store",
    "Transition",
    "WaitingJob",
]
