"""The port every inference-server dialect implements, and the dispatch between them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Collection, Mapping
from typing import Protocol

from warmpath_adapter.admission import BackendAdmission
from warmpath_adapter.metrics import AdapterMetrics, BackendMeter
from warmpath_common.config import BackendKindName
from warmpath_common.errors import InvalidRequest
from warmpath_common.generation import (
    AdapterEvent,
    Endpoint,
    GenerationRequest,
    Queued,
    StreamEvent,
)
from warmpath_common.stream_metrics import measured_stream

__all__ = ["BackendDispatcher", "InferenceBackend"]


class InferenceBackend(Protocol):
    """Streams an answer from one dialect of inference server.

    Yields TextDelta events and exactly one final Completion, or raises a
    WarmpathError (never a transport exception). Closing the iterator early
    must cancel the request at the server.
    """

    def stream(
        self, request: GenerationRequest, target: Endpoint
    ) -> AsyncGenerator[StreamEvent, None]: ...


class BackendDispatcher:
    """Sends each request to the backend implementation for its server kind."""

    def __init__(
        self,
        backends: Mapping[BackendKindName, InferenceBackend],
        metrics: AdapterMetrics,
        admission: BackendAdmission | None = None,
        one_at_a_time: Collection[BackendKindName] = (BackendKindName.LLAMA_CPP,),
    ) -> None:
        self._backends = dict(backends)
        self._metrics = metrics
        self._admission = admission or BackendAdmission(max_running=32, max_waiting=64)
        self._one_at_a_time = frozenset(one_at_a_time)

    def stream(
        self, request: GenerationRequest, target: Endpoint
    ) -> AsyncGenerator[AdapterEvent, None]:
        """The answer, preceded by Queued events when the request has to wait its turn."""
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
        admitted = self._admitted(
            backend.stream(request, target),
            f"{target.base_url} ({target.served_model_id})",
            target.kind in self._one_at_a_time,
        )
        meter = BackendMeter(self._metrics, target.kind.value)
        return measured_stream(admitted, meter, self._metrics.in_flight, time.monotonic)

    async def _admitted(
        self, events: AsyncGenerator[StreamEvent, None], server: str, one_at_a_time: bool
    ) -> AsyncGenerator[AdapterEvent, None]:
        # The router counts a try's silence from its last Queued(0) (or its start):
        # a request waiting its turn here is not a hung server.
        ahead = self._admission.ahead(server, one_at_a_time)
        if ahead:
            yield Queued(ahead)
        async with self._admission.admit(server, one_at_a_time), contextlib.aclosing(events):
            if ahead:
                yield Queued(0)
            async for event in events:
                yield event
