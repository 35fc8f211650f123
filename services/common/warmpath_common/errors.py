"""Warmpath's error tree. Each error declares the gRPC status it maps to.

    WarmpathError
    ├── InvalidRequest        INVALID_ARGUMENT     the caller must change the request
    ├── Unauthenticated       UNAUTHENTICATED      no valid credentials
    ├── PermissionDenied      PERMISSION_DENIED    valid credentials, not allowed this
    ├── ModelNotFound         NOT_FOUND            unknown model; message lists what exists
    ├── FailedPrecondition    FAILED_PRECONDITION  the system's state forbids it (e.g. pinned)
    ├── ResourceExhausted     RESOURCE_EXHAUSTED   no room: memory, queue, concurrency
    ├── Unavailable           UNAVAILABLE          a peer or backend cannot be reached / cut off
    ├── DeadlineExceeded      DEADLINE_EXCEEDED    a backend stalled or the deadline ran out
    └── Cancelled             CANCELLED            the caller went away

Domain code raises these; the server interceptor in ``grpc_server`` is the one
place that turns them into statuses, and the client adapters are the one place
that turns statuses back into them.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class WarmpathError(Exception):
    """Base of every error Warmpath reports to a caller."""

    status_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(WarmpathError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(WarmpathError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(WarmpathError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class ModelNotFound(WarmpathError):
    status_code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(WarmpathError):
    status_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(WarmpathError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(WarmpathError):
    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(WarmpathError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(WarmpathError):
    status_code = grpc.StatusCode.CANCELLED


_BY_CODE: dict[grpc.StatusCode, type[WarmpathError]] = {
    cls.status_code: cls
    for cls in (
        InvalidRequest,
        Unauthenticated,
        PermissionDenied,
        ModelNotFound,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
    )
}


def error_for_status(code: grpc.StatusCode, message: str) -> WarmpathError:
    """The WarmpathError for a status received from a peer (INTERNAL if unmapped)."""
    return _BY_CODE.get(code, WarmpathError)(message)
