"""Ollama's native streaming API (/api/chat, /api/generate), newline-delimited JSON."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from warmpath_adapter.http_backend import HttpBackend, prompt_fields
from warmpath_adapter.http_errors import stream_object
from warmpath_adapter.tracing import BackendCallSpan
from warmpath_common.errors import Unavailable
from warmpath_common.generation import (
    Completion,
    Endpoint,
    FinishReason,
    GenerationRequest,
    StreamEvent,
    TextDelta,
    Usage,
)

__all__ = ["OllamaBackend", "request_body"]


def request_body(request: GenerationRequest, target: Endpoint) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.seed is not None:
        options["seed"] = request.seed
    if request.stop:
        options["stop"] = list(request.stop)
    body: dict[str, Any] = {
        "model": target.served_model_id,
        "stream": True,
        "options": options,
        # The gpu-agent decides when a model leaves memory, not Ollama's
        # default five-minute timer (which every request would reset).
        "keep_alive": -1,
        **prompt_fields(request),
    }
    return body


class OllamaBackend(HttpBackend):
    """Streams from an existing Ollama server."""

    def url(self, request: GenerationRequest, target: Endpoint) -> str:
        return target.base_url.rstrip("/") + ("/api/chat" if request.is_chat else "/api/generate")

    async def _stream(
        self, request: GenerationRequest, target: Endpoint, url: str, call: BackendCallSpan
    ) -> AsyncGenerator[StreamEvent, None]:
        async with self._post(url, request_body(request, target), call) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                chunk = stream_object(line, url)
                text = _text(chunk, request.is_chat, url)
                if text:
                    yield TextDelta(text)
                if chunk.get("done"):
                    yield Completion(
                        finish_reason=(
                            FinishReason.LENGTH
                            if chunk.get("done_reason") == "length"
                            else FinishReason.STOP
                        ),
                        usage=Usage(
                            input_tokens=_count(chunk, "prompt_eval_count", url),
                            output_tokens=_count(chunk, "eval_count", url),
                        ),
                    )
                    return
        raise Unavailable(f"backend {url} ended the stream before it was done")


def _text(chunk: dict[str, Any], is_chat: bool, url: str) -> str:
    if is_chat:
        message = chunk.get("message") or {}
        if not isinstance(message, dict):
            raise Unavailable(f"backend {url} sent a malformed stream line (message)")
        text = message.get("content")
    else:
        text = chunk.get("response")
    return text if isinstance(text, str) else ""


def _count(chunk: dict[str, Any], key: str, url: str) -> int:
    value = chunk.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unavailable(f"backend {url} sent a malformed stream line ({key})")
    return value
