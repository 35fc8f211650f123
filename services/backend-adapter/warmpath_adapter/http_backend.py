"""What the HTTP dialects (OpenAI-compatible, Ollama) share: client, timeouts, tracing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import httpx

from warmpath_adapter.tracing import BackendCallSpan, traced
from warmpath_common.generation import Endpoint, GenerationRequest, StreamEvent
from warmpath_common.telemetry import PROMPTS_NOT_RECORDED, TraceContentPolicy

__all__ = ["HttpBackend"]


class HttpBackend:
    """Subclasses say where a request goes (`url`) and how its stream reads (`_stream`)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        idle_timeout_seconds: float,
        connect_timeout_seconds: float = 5.0,
        content_policy: TraceContentPolicy = PROMPTS_NOT_RECORDED,
    ) -> None:
        self._content = content_policy
        self._client = client
        self._idle_timeout = idle_timeout_seconds
        self._timeout = httpx.Timeout(idle_timeout_seconds, connect=connect_timeout_seconds)

    def url(self, request: GenerationRequest, target: Endpoint) -> str:
        raise NotImplementedError

    def stream(
        self, request: GenerationRequest, target: Endpoint
    ) -> AsyncGenerator[StreamEvent, None]:
        return self._traced(request, target, self.url(request, target))

    async def _traced(
        self, request: GenerationRequest, target: Endpoint, url: str
    ) -> AsyncGenerator[StreamEvent, None]:
        # The span starts when the stream is first read, not when it is made: a
        # request refused before it reaches the backend leaves no open span.
        call = BackendCallSpan(request, target, url, self._content)
        events = traced(self._stream(request, target, url, call), call, target.served_model_id)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    def _stream(
        self, request: GenerationRequest, target: Endpoint, url: str, call: BackendCallSpan
    ) -> AsyncGenerator[StreamEvent, None]:
        raise NotImplementedError
