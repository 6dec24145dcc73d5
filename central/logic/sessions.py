"""Open pilot sessions: one command queue per pilot with a live PilotSession stream.

Logic puts commands here (kill a job, drain); the session servicer drains the queue down the
stream. A pilot that reconnects replaces its old session, which is told to end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from gridpilot.logs import get_logger

log = get_logger(__name__)


class CommandKind(StrEnum):
    KILL_JOB = "kill_job"
    DRAIN = "drain"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    job_id: int = 0
    reason: str = ""


# None tells a session's writer to end the stream (replaced by a newer one, or shutdown).
CommandQueue = asyncio.Queue[Command | None]


class SessionRegistry:
    def __init__(self) -> None:
        self._queues: dict[str, CommandQueue] = {}

    def __len__(self) -> int:
        return len(self._queues)

    def __contains__(self, pilot_id: object) -> bool:
        return pilot_id in self._queues

    def open(self, pilot_id: str) -> CommandQueue:
        queue: CommandQueue = asyncio.Queue()
        old = self._queues.get(pilot_id)
        if old is not None:
            old.put_nowait(None)
            log.info("session.replaced", pilot_id=pilot_id)
        self._queues[pilot_id] = queue
        return queue

    def close(self, pilot_id: str, queue: CommandQueue) -> None:
        # Only the current session may remove itself; a replaced one must not drop its successor.
        if self._queues.get(pilot_id) is queue:
            del self._queues[pilot_id]

    def send(self, pilot_id: str, command: Command) -> bool:
        """Queue a command for the pilot; False when it has no open session."""
        queue = self._queues.get(pilot_id)
        if queue is None:
            return False
        queue.put_nowait(command)
        log.info(
            "session.command",
            pilot_id=pilot_id,
            kind=command.kind.value,
            job_id=command.job_id,
        )
        return True

    def close_all(self) -> None:
        for queue in self._queues.values():
            queue.put_nowait(None)
        self._queues.clear()
