"""What the HTTP dialects (OpenAI-compatible, Ollama) share: client, timeouts, tracing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from warmpath_adapter.http_errors import error_for_response, translate_transport_errors
from warmpath_adapter.tracing import BackendCallSpan, traced
from warmpath_common.generation import Endpoint, GenerationRequest, StreamEvent
from warmpath_common.telemetry import PROMPTS_NOT_RECORDED, TraceContentPolicy

__all__ = ["HttpBackend", "prompt_fields"]


def prompt_fields(request: GenerationRequest) -> dict[str, Any]:
    """The prompt as both dialects' bodies carry it: chat turns as `messages`, else `prompt`."""
    if request.is_chat:
        return {"messages": [{"role": t.role, "content": t.content} for t in request.messages]}
    return {"prompt": request.prompt}


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

    @contextlib.asynccontextmanager
    async def _post(
        self,
        url: str,
        body: Mapping[str, Any],
        call: BackendCallSpan,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """The streamed answer to POSTing `body`, once its status says it succeeded.

        HTTP failures, while sending or while the caller reads the answer, come out
        as Warmpath errors (http_errors.py)."""
        with translate_transport_errors(url, self._idle_timeout):
            async with self._client.stream(
                "POST",
                url,
                json=body,
                headers={**call.headers, **(headers or {})},
                timeout=self._timeout,
            ) as response:
                call.http_status(response.status_code)
                if response.status_code >= 400:
                    raise error_for_response(response.status_code, url)
                yield response
