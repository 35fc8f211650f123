"""The client span around one HTTP call to an inference server (GenAI conventions)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GenAiOperationNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_PATH
from opentelemetry.trace import SpanKind, Status, StatusCode

from warmpath_common.errors import WarmpathError
from warmpath_common.generation import (
    Completion,
    Endpoint,
    GenerationRequest,
    StreamEvent,
    TextDelta,
)
from warmpath_common.telemetry import TraceContentPolicy, request_attributes

__all__ = ["BackendCallSpan", "traced"]

_tracer = trace.get_tracer(__name__)
_CHAT = GenAiOperationNameValues.CHAT.value
_TEXT_COMPLETION = GenAiOperationNameValues.TEXT_COMPLETION.value


class BackendCallSpan:
    """One span per backend request; no span per token.

    Started without becoming current, because the stream it covers yields to
    the caller between chunks. Its context is injected into the HTTP headers
    so an instrumented inference server continues the trace.
    """

    def __init__(
        self,
        request: GenerationRequest,
        target: Endpoint,
        url: str,
        policy: TraceContentPolicy,
    ) -> None:
        operation = _CHAT if request.is_chat else _TEXT_COMPLETION
        parts = urlsplit(url)
        self._policy = policy
        self._request = request
        self._started = time.monotonic()
        self._first_token_seen = False
        self._output: list[str] = []
        self._span = _tracer.start_span(
            f"{operation} {target.served_model_id}",
            kind=SpanKind.CLIENT,
            attributes={
                **request_attributes(request, target.served_model_id),
                GEN_AI_PROVIDER_NAME: target.kind.value,
                SERVER_ADDRESS: parts.hostname or "",
                SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
                URL_PATH: parts.path,
                HTTP_REQUEST_METHOD: "POST",
            },
        )
        self.headers: dict[str, str] = {}
        propagate.inject(self.headers, context=trace.set_span_in_context(self._span))

    def text(self, piece: str) -> None:
        if not self._first_token_seen:
            self._first_token_seen = True
            self._span.set_attribute(
                "warmpath.time_to_first_token_seconds", time.monotonic() - self._started
            )
        if self._policy.record_content:
            self._output.append(piece)

    def http_status(self, status: int) -> None:
        self._span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)

    def finish(self, completion: Completion, served_model: str) -> None:
        self._span.set_attributes(
            {
                GEN_AI_RESPONSE_MODEL: served_model,
                GEN_AI_RESPONSE_FINISH_REASONS: [completion.finish_reason.value],
                GEN_AI_USAGE_INPUT_TOKENS: completion.usage.input_tokens,
                GEN_AI_USAGE_OUTPUT_TOKENS: completion.usage.output_tokens,
            }
        )
        if self._policy.record_content:
            self._span.set_attribute(GEN_AI_INPUT_MESSAGES, _input_messages(self._request))
            self._span.set_attribute(
                GEN_AI_OUTPUT_MESSAGES,
                json.dumps([{"role": "assistant", "content": "".join(self._output)}]),
            )

    def fail(self, error: BaseException) -> None:
        if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            # The caller went away; the HTTP request is closed with the stream.
            self._span.set_attribute(ERROR_TYPE, "CANCELLED")
            self._span.set_status(Status(StatusCode.ERROR, "cancelled by the caller"))
        elif isinstance(error, WarmpathError):
            # The message is ours and carries no prompt text.
            self._span.set_status(
                Status(StatusCode.ERROR, f"{error.status_code.name}: {error.message}")
            )
            self._span.set_attribute(ERROR_TYPE, error.status_code.name)
        else:
            self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self._span.set_attribute(ERROR_TYPE, type(error).__name__)

    def end(self) -> None:
        self._span.end()


def _input_messages(request: GenerationRequest) -> str:
    if request.is_chat:
        return json.dumps([{"role": t.role, "content": t.content} for t in request.messages])
    return json.dumps([{"role": "user", "content": request.prompt}])


async def traced(
    events: AsyncGenerator[StreamEvent, None], call: BackendCallSpan, served_model: str
) -> AsyncGenerator[StreamEvent, None]:
    """Passes `events` through, recording them on `call`, and ends the span."""
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                call.text(event.text)
            else:
                call.finish(event, served_model)
            yield event
    except BaseException as error:
        call.fail(error)
        raise
    finally:
        call.end()
