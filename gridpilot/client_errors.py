"""The errors of the CLI's client side: each is one clear line for the user."""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """A client-side problem worth one clear line to the user (bad setting, central error)."""


class CentralUnreachableError(ClientError):
    """Central could not be reached (connection refused, DNS, deadline before any answer)."""


class CentralRequestError(ClientError):
    """Central answered with an error status; `code` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


class TokenMissingError(ClientError):
    """There is no token file: the user has not logged in."""


class TokenExpiredError(ClientError):
    """The stored token's lifetime is over."""
