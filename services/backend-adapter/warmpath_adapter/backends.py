"""The port every inference-server dialect implements, and the dispatch between them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from warmpath_common.config import BackendKindName
from warmpath_common.errors import InvalidRequest
from warmpath_common.generation import GenerationRequest, StreamEvent


@dataclass(frozen=True, slots=True)
class BackendTarget:
    """One model on one inference server."""

    kind: BackendKindName
    base_url: str
    served_model_id: str


class InferenceBackend(Protocol):
    """Streams an answer from one dialect of inference server.

    Yields TextDelta events and exactly one final Completion, or raises a
    WarmpathError (never a transport exception). Closing the iterator early
    must cancel the request at the server.
    """

    def stream(
        self, request: GenerationRequest, target: BackendTarget
    ) -> AsyncIterator[StreamEvent]: ...


class BackendDispatcher:
    """Sends each request to the backend implementation for its server kind."""

    def __init__(self, backends: Mapping[BackendKindName, InferenceBackend]) -> None:
        self._backends = dict(backends)

    def stream(
        self, request: GenerationRequest, target: BackendTarget
    ) -> AsyncIterator[StreamEvent]:
        # The overall deadline is the gRPC call's: when it expires the call is
        # cancelled, the iterator is closed and the HTTP request with it.
        if not target.base_url.startswith(("http://", "https://")):
            raise InvalidRequest(
                f"endpoint base_url {target.base_url!r} must start with http:// or https://"
            )
        backend = self._backends.get(target.kind)
        if backend is None:
            supported = ", ".join(sorted(self._backends))
            raise InvalidRequest(f"backend kind {target.kind} is not supported (have {supported})")
        return backend.stream(request, target)
