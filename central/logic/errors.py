"""Domain errors of central: one root, one subclass per outcome a caller must tell apart.

The RPC interceptor maps each subclass to one gRPC status code (central/rpc/interceptor.py);
logic never imports grpc.
"""

from __future__ import annotations


class GridpilotError(Exception):
    """Root of central's domain errors; the message is shown to the caller as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(GridpilotError):
    """The job, pilot, sandbox or SE named does not exist."""


class InvalidArgumentError(GridpilotError):
    """The request itself is wrong (bad priority, unknown site, unknown LFN...)."""


class UnauthenticatedError(GridpilotError):
    """The caller did not prove who it is (no or bad credential, spent registration token)."""


class PermissionDeniedError(GridpilotError):
    """The caller may not touch this object."""


class FailedPreconditionError(GridpilotError):
    """The request is valid but the object is not in a state that allows it (stale attempt,
    job already final...)."""


class ResourceExhaustedError(GridpilotError):
    """A size or count limit was hit (sandbox too large...)."""
