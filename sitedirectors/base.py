"""The interface every site-director backend implements, with its typed inputs and outputs.

A backend puts pilots on one kind of computing element (local processes, SSH, SLURM, ARC,
HTCondorCE, cloud VMs) and answers for them by the *reference* it handed out at submission.
Each backend lives in its own module, which starts with its native state -> `PilotState` table
and keeps its parsing in pure `parse_*` functions, so the mapping is tested on captured output.

Operations: `submit`, `status` and `cancel` are required. `fetch_output` and `cleanup` are
optional: the base class raises `BackendNotSupportedError` for them, and the director treats
that as "this backend cannot", not as a failure.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from central.models.pilot_states import PilotState
from sitedirectors.bundle import PilotBundle

# Default cap on the log text `fetch_output` returns (central caps again on its side).
DEFAULT_LOG_CAP_BYTES = 64 * 1024


class BackendError(Exception):
    """A backend operation failed as a whole (not one pilot of it)."""

    def __init__(self, backend: str, operation: str, message: str) -> None:
        super().__init__(f"{backend} backend: {operation} failed: {message}")
        self.backend = backend
        self.operation = operation
        self.detail = message


class BackendNotSupportedError(BackendError):
    """The backend does not offer this operation at all."""

    def __init__(self, backend: str, operation: str) -> None:
        super().__init__(backend, operation, "not supported by this backend")


class BackendConfigError(ValueError):
    """The queue's backend options are invalid; the message names the field."""


@dataclass(frozen=True)
class BackendContext:
    """What a backend factory gets: the queue's name and free-form `backend_options`."""

    queue: str
    # The director's own work directory; a backend keeping local files uses a subdirectory.
    work_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    # The pilot bundle backends for remote worker nodes ship (director.pilot_bundle).
    bundle: PilotBundle | None = None
    # The director's name (director.name): a backend that tags what it creates (cloud VMs)
    # finds its own by it.
    director: str = ""


@dataclass(frozen=True)
class PilotQueue:
    """What a backend needs to know about the queue it submits to."""

    name: str
    site: str
    ce: str
    slots: int
    memory_mb: int
    cpu_time: int


@dataclass(frozen=True)
class PilotLaunch:
    """One pilot to start.

    `command` is the program to run; empty means *the backend's pilot*: the local backend
    runs `python -m pilot` from the director's own installation, backends for remote worker
    nodes run the pilot bundle's launcher (sitedirectors/start_script.py). `arguments` are
    the pilot's options except its work directory and credentials: only the backend knows
    where the pilot will run, so it appends `--work-dir <dir>` itself, and it ships the
    pilot's `registration_token` and the `ca` certificate its own way, as files
    (`--token-file FILE`, `--ca FILE`): a token must never travel in argv (any user on the
    node can read a process's command line) nor in a file others can read. `environment` is
    added to what the backend's execution environment already provides.
    """

    pilot_id: str
    command: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    # Single-use, short-lived; central refuses it once the pilot has registered.
    registration_token: str = field(default="", repr=False)
    ca: Path | None = None


@dataclass(frozen=True)
class SubmitRequest:
    queue: PilotQueue
    pilots: tuple[PilotLaunch, ...]


class SubmitOutcome(StrEnum):
    OK = "ok"
    # Will fail again the same way (bad configuration, refused credentials...).
    FAILED = "failed"
    # Transient (CE busy, connection dropped): the same submission may work next cycle.
    RETRY = "retry"


@dataclass(frozen=True)
class SubmitResult:
    pilot_id: str
    outcome: SubmitOutcome
    reference: str = ""
    error: str = ""

    @classmethod
    def ok(cls, pilot_id: str, reference: str) -> SubmitResult:
        return cls(pilot_id, SubmitOutcome.OK, reference=reference)

    @classmethod
    def failed(cls, pilot_id: str, error: str) -> SubmitResult:
        return cls(pilot_id, SubmitOutcome.FAILED, error=error)

    @classmethod
    def retry(cls, pilot_id: str, error: str) -> SubmitResult:
        return cls(pilot_id, SubmitOutcome.RETRY, error=error)


@dataclass(frozen=True)
class LivePilot:
    """Central's view of one of a queue's pilots that has not ended (see `Backend.reconcile`).
    Times are seconds since the epoch; 0 when it has not happened."""

    pilot_id: str
    reference: str
    state: PilotState
    submitted: float
    registered: float = 0.0
    last_heartbeat: float = 0.0


@dataclass(frozen=True)
class BackendStatus:
    """A pilot as its backend sees it: the common state plus the native one it came from."""

    state: PilotState
    native: str
    exit_code: int | None = None
    reason: str = ""


class Backend(abc.ABC):
    """One computing-element type. Instances are created per queue by the registry."""

    #: The name the backend is registered under (also recorded in central's pilot records).
    name: str = ""
    #: The longest registration token (seconds) this backend's pilots should get, whatever
    #: the queue's `pilot.token_lifetime` says; 0 = no cap of the backend's own. A backend
    #: whose token can be read where it waits (cloud user data) keeps it short.
    max_token_lifetime: float = 0.0

    @abc.abstractmethod
    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        """Start the requested pilots; one result per pilot, in request order. Raises
        `BackendError` only when nothing could be attempted (then all count as failed)."""

    @abc.abstractmethod
    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        """The state of each pilot, keyed by reference; every reference gets an entry
        (`PilotState.UNKNOWN` with a reason when the backend cannot tell)."""

    @abc.abstractmethod
    def cancel(self, references: Sequence[str]) -> None:
        """Stop the pilots. Already finished or unknown references are not an error."""

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        """The tail (at most `max_bytes` bytes) of the pilot's log. Optional: raises
        `BackendNotSupportedError` when the backend cannot retrieve logs."""
        raise BackendNotSupportedError(self.name, "fetch_output")

    def reconcile(self, live: Sequence[LivePilot], now: float) -> None:
        """Once per cycle, after the states went to central: the queue's pilots central still
        counts as live, so a backend that pays for the resources under its pilots (cloud VMs)
        can release the ones nobody needs (a pilot that ended, never registered, or lives too
        long). Does nothing by default."""
        return None

    def cleanup(self, references: Sequence[str]) -> None:
        """Remove what the backend keeps for finished pilots (directories, batch job
        records). Optional: raises `BackendNotSupportedError` when there is nothing to do."""
        raise BackendNotSupportedError(self.name, "cleanup")

    def close(self) -> None:
        """Release connections; pilots keep running. Does nothing by default."""
        return None
