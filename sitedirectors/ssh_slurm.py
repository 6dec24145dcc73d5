"""SSH + SLURM: the SLURM backend (sitedirectors/slurm.py) on a login node reached over SSH.

The SLURM logic exists once: this backend hands `SlurmBackend` the SSH connection's runner
and SFTP files (sitedirectors/ssh_session.py), so `sbatch`/`squeue`/`scancel` run on the
login node and the pilots' files are staged there over SFTP, exactly as on a local submit
host. The SLURM backend needs its work directory as an absolute path, and a relative one
is resolved against the remote home -- which takes the connection -- so it is built on first
use: creating the backend (the director starting) never needs the host to be up.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from sitedirectors.base import (
    DEFAULT_LOG_CAP_BYTES,
    Backend,
    BackendError,
    BackendStatus,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.bundle import PilotBundle
from sitedirectors.remote import CommandError
from sitedirectors.slurm import SlurmBackend, SlurmOptions
from sitedirectors.ssh_session import SftpFiles, SshRunner, SshSession


class SshSlurmBackend(Backend):
    name = "ssh"

    def __init__(
        self,
        session: SshSession,
        work_dir: str,
        options: SlurmOptions,
        bundle: PilotBundle | None = None,
    ) -> None:
        self.session = session
        self.work_dir = work_dir
        self.options = options
        self.bundle = bundle
        self._slurm: SlurmBackend | None = None

    def slurm(self, operation: str) -> SlurmBackend:
        """The SLURM backend over this connection; BackendError when the host cannot be
        reached to resolve the work directory."""
        if self._slurm is None:
            files = SftpFiles(self.session, timeout=self.options.command_timeout)
            try:
                work_dir = files.absolute(self.work_dir)
            except (CommandError, OSError) as exc:
                raise BackendError(self.name, operation, str(exc)) from exc
            options = msgspec.structs.replace(self.options, work_dir=work_dir)
            self._slurm = SlurmBackend(SshRunner(self.session), files, options, self.bundle)
        return self._slurm

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        try:
            slurm = self.slurm("submit")
        except BackendError as exc:
            cause = exc.__cause__
            make = (
                SubmitResult.retry
                if isinstance(cause, CommandError) and cause.transient
                else SubmitResult.failed
            )
            return [make(launch.pilot_id, exc.detail) for launch in request.pilots]
        return slurm.submit(request)

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        return self.slurm("status").status(references)

    def cancel(self, references: Sequence[str]) -> None:
        self.slurm("cancel").cancel(references)

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        return self.slurm("fetch_output").fetch_output(reference, max_bytes)

    def cleanup(self, references: Sequence[str]) -> None:
        self.slurm("cleanup").cleanup(references)

    def close(self) -> None:
        self.session.close()
