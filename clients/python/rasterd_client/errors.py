"""Exceptions raised by the rasterd client, one per gRPC status that callers handle."""

from __future__ import annotations

from typing import Optional

import grpc


class RasterdError(Exception):
    """Base class of every error that the rasterd client raises.

    `code` is the gRPC status code when the error came from a call, else None.
    `details` is the status message the server sent, or "" when there was none.
    """

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class RasterdUnavailableError(RasterdError, ConnectionError):
    """The server could not be reached (gRPC UNAVAILABLE), after all retries."""


class RasterdInvalidArgumentError(RasterdError, ValueError):
    """The server rejected a request field (gRPC INVALID_ARGUMENT). `details` contains its reason."""


class RasterdNotFoundError(RasterdError, LookupError):
    """The server has no such map or resource (gRPC NOT_FOUND)."""


class RasterdDeadlineError(RasterdError, TimeoutError):
    """The call did not finish within its deadline (gRPC DEADLINE_EXCEEDED)."""


UNAVAILABLE_HINT = "Is `rasterd serve` running on it?"


def error_from_rpc(error: grpc.RpcError, target: str, method: str, attempts: int = 1) -> RasterdError:
    """Translate a failed gRPC call into the matching RasterdError subclass.

    `method` is the RPC name and `attempts` the number of tries made, and both go
    into the message.
    """
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or ""

    if code is grpc.StatusCode.UNAVAILABLE:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        message = f"rasterd server at {target} is unavailable ({method}, {tries}): {details}. {UNAVAILABLE_HINT}"
        return RasterdUnavailableError(message, code, details)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return RasterdInvalidArgumentError(f"{method} rejected by {target}: {details}", code, details)
    if code is grpc.StatusCode.NOT_FOUND:
        return RasterdNotFoundError(f"{method} on {target}: not found: {details}", code, details)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"{method} on {target} timed out: {details or 'deadline exceeded'}"
        return RasterdDeadlineError(message, code, details)

    code_name = code.name if code is not None else "UNKNOWN"
    return RasterdError(f"{method} on {target} failed with {code_name}: {details}", code, details)
