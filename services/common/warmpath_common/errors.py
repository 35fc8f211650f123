"""Warmpath's error tree. Each error declares the gRPC status it maps to.

    WarmpathError
    ├── InvalidRequest        INVALID_ARGUMENT     the caller must change the request
    ├── Unauthenticated       UNAUTHENTICATED      no valid credentials
    ├── PermissionDenied      PERMISSION_DENIED    valid credentials, not allowed this
    ├── ModelNotFound         NOT_FOUND            unknown model; message lists what exists
    ├── FailedPrecondition    FAILED_PRECONDITION  the system's state forbids it (e.g. pinned)
    ├── ResourceExhausted     RESOURCE_EXHAUSTED   no room: memory, queue, concurrency
    ├── Unavailable           UNAVAILABLE          a peer or backend cannot be reached / cut off
    │   └── PeerLost                                   the peer itself was lost, saying nothing
    ├── DeadlineExceeded      DEADLINE_EXCEEDED    a backend stalled or the deadline ran out
    └── Cancelled             CANCELLED            the caller went away

Domain code raises these; the server plumbing in ``call_plumbing`` is the one place
that turns them into statuses, and the client adapters the one place that turns
statuses back into them.

``not_sent``: the request provably never reached a model server, so another replica
may run it (``warmpath-not-sent: true`` across a hop). ``backend_down``: no
connection to the model server could be made at all, so ask its agent once
(``warmpath-backend-down: true``). docs/architecture.md explains both.
Every status a Warmpath server sends for a WarmpathError carries
``warmpath-peer-answered: true``: the peer was up and said what failed, so a
client does not report the peer itself as unavailable.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import grpc

__all__ = [
    "BACKEND_DOWN_METADATA_KEY",
    "NOT_SENT_METADATA_KEY",
    "PEER_ANSWERED_METADATA_KEY",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidRequest",
    "ModelNotFound",
    "PeerLost",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "WarmpathError",
    "error_for_status",
    "status_of",
]


class WarmpathError(Exception):
    """Base of every error Warmpath reports to a caller."""

    status_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, not_sent: bool = False, backend_down: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # False means "may have reached a model server", the only safe default.
        self.not_sent = not_sent or backend_down
        self.backend_down = backend_down


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


class PeerLost(Unavailable):
    """The peer itself could not be reached, or its connection died (keepalive, reset):
    it did not answer this status (no peer-answered mark)."""


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


# Trailing metadata key (gRPC keys are lower case) that carries `WarmpathError.not_sent`.
NOT_SENT_METADATA_KEY = "warmpath-not-sent"
# ... and `WarmpathError.backend_down`.
BACKEND_DOWN_METADATA_KEY = "warmpath-backend-down"
# ... and that the peer itself answered with this status (it is up).
PEER_ANSWERED_METADATA_KEY = "warmpath-peer-answered"


def status_of(error: BaseException) -> grpc.StatusCode:
    """The status a call ends with when `error` ends it: a WarmpathError's own,
    CANCELLED when the caller went away, INTERNAL for anything unexpected."""
    if isinstance(error, WarmpathError):
        return error.status_code
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL


def error_for_status(
    code: grpc.StatusCode, message: str, *, not_sent: bool = False, backend_down: bool = False
) -> WarmpathError:
    """The WarmpathError for a status received from a peer (INTERNAL if unmapped)."""
    return _BY_CODE.get(code, WarmpathError)(message, not_sent=not_sent, backend_down=backend_down)
