"""OpenAI-compatible streaming (vLLM, SGLang, llama.cpp servers) over HTTP + SSE."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from httpx_sse import EventSource

from warmpath_adapter.http_backend import HttpBackend, prompt_fields
from warmpath_adapter.http_errors import stream_object, translate_transport_errors
from warmpath_adapter.tracing import BackendCallSpan
from warmpath_common.config import BackendKindName
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

__all__ = ["OpenAICompatibleBackend", "request_body"]

logger = logging.getLogger(__name__)

# What httpx-sse's aconnect_sse asks for.
_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "eos": FinishReason.STOP,
}


def request_body(request: GenerationRequest, target: Endpoint) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": target.served_model_id,
        "stream": True,
        # Servers that support it (vLLM, SGLang, llama.cpp's own server) then
        # report exact token usage in a last chunk.
        "stream_options": {"include_usage": True},
        **prompt_fields(request),
    }
    optional = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.stop:
        body["stop"] = list(request.stop)
    return body


class OpenAICompatibleBackend(HttpBackend):
    """Streams /v1/chat/completions or /v1/completions with Server-Sent Events."""

    def url(self, request: GenerationRequest, target: Endpoint) -> str:
        path = "/v1/chat/completions" if request.is_chat else "/v1/completions"
        return target.base_url.rstrip("/") + path

    async def _stream(
        self, request: GenerationRequest, target: Endpoint, url: str, call: BackendCallSpan
    ) -> AsyncGenerator[StreamEvent, None]:
        body = request_body(request, target)
        pieces_counted = 0
        finish: FinishReason | None = None
        usage: Usage | None = None
        async with self._post(url, body, call, _SSE_HEADERS) as response:
            source = EventSource(response)
            async for event in source.aiter_sse():
                if event.data.strip() == "[DONE]":
                    # Read on to the end of the body: a response closed unread
                    # cannot go back to the pool, and every request would then
                    # open a new connection to the model server.
                    continue
                chunk = stream_object(event.data, url)
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"], url)
                for choice in _choices(chunk, url):
                    text = _choice_text(choice, request.is_chat, url)
                    if text is not None:
                        pieces_counted += 1
                        if text:
                            yield TextDelta(text)
                    reason = choice.get("finish_reason")
                    if reason:
                        finish = _FINISH_REASONS.get(str(reason), FinishReason.STOP)
        if finish is None:
            raise Unavailable(f"backend {url} ended the stream without a finish reason")
        if usage is None:
            usage = await self._count_usage(request, target, pieces_counted)
        yield Completion(finish_reason=finish, usage=usage)

    async def _count_usage(
        self,
        request: GenerationRequest,
        target: Endpoint,
        pieces_counted: int,
    ) -> Usage:
        """Usage for servers that do not report it when streaming.

        llama-cpp-python's server streams one chunk per generated token, so the
        chunk count is the output token count; the prompt is counted with the
        server's own tokenizer. Other servers report usage themselves.
        """
        if target.kind is not BackendKindName.LLAMA_CPP:
            return Usage(input_tokens=0, output_tokens=pieces_counted)
        prompt_text = (
            "".join(turn.content for turn in request.messages)
            if request.is_chat
            else request.prompt
        )
        url = target.base_url.rstrip("/") + "/extras/tokenize/count"
        try:
            with translate_transport_errors(url, self._idle_timeout):
                response = await self._client.post(
                    url, json={"input": prompt_text}, timeout=self._timeout
                )
            response.raise_for_status()
            input_tokens = int(response.json()["count"])
        except (Unavailable, httpx.HTTPStatusError, KeyError, ValueError) as error:
            logger.warning("could not count prompt tokens at %s: %s", url, type(error).__name__)
            input_tokens = 0
        return Usage(input_tokens=input_tokens, output_tokens=pieces_counted)


def _malformed(url: str, what: str) -> Unavailable:
    return Unavailable(f"backend {url} sent a malformed stream chunk ({what})")


def _usage(value: Any, url: str) -> Usage:
    if not isinstance(value, dict):
        raise _malformed(url, "usage is not an object")
    counts = (value.get("prompt_tokens", 0), value.get("completion_tokens", 0))
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise _malformed(url, "token counts are not non-negative integers")
    return Usage(input_tokens=counts[0], output_tokens=counts[1])


def _choices(chunk: dict[str, Any], url: str) -> list[dict[str, Any]]:
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise _malformed(url, "choices is not a list of objects")
    return choices


def _choice_text(choice: dict[str, Any], is_chat: bool, url: str) -> str | None:
    """The generated text in a choice, or None when the choice carries no token."""
    if is_chat:
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise _malformed(url, "delta is not an object")
        content = delta.get("content")
    else:
        content = choice.get("text")
        if content == "" and choice.get("finish_reason"):
            return None
    return content if isinstance(content, str) else None
