"""OpenAI's API: /v1/chat/completions and /v1/completions requests to GenerationRequest,
answers and streams (chunks, `data: [DONE]`) and errors back in OpenAI's shapes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from warmpath_common.generation import ChatTurn, Completion, GenerationRequest
from warmpath_router.decision import RoutedCompletion, RouteTaken
from warmpath_router.http_api.translation import (
    BadField,
    Body,
    Problem,
    ProblemKind,
    sse,
    text_turns,
)

__all__ = ["OpenAiCall", "OpenAiDialect", "OpenAiStream", "parse_chat", "parse_completion"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_ERROR_TYPES = {
    ProblemKind.INVALID_REQUEST: "invalid_request_error",
    ProblemKind.AUTHENTICATION: "authentication_error",
    ProblemKind.PERMISSION: "permission_error",
    ProblemKind.NOT_FOUND: "invalid_request_error",
    ProblemKind.TOO_LARGE: "invalid_request_error",
    ProblemKind.RATE_LIMIT: "rate_limit_error",
    ProblemKind.UNAVAILABLE: "server_error",
    ProblemKind.TIMEOUT: "timeout_error",
    ProblemKind.INTERNAL: "server_error",
}
_ERROR_CODES = {
    ProblemKind.RATE_LIMIT: "rate_limit_exceeded",
    ProblemKind.UNAVAILABLE: "service_unavailable",
    ProblemKind.TIMEOUT: "timeout",
    ProblemKind.TOO_LARGE: "request_too_large",
}


@dataclass(frozen=True, slots=True)
class OpenAiCall:
    request: GenerationRequest
    stream: bool
    chat: bool
    include_usage: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def renderer(self, route: RouteTaken) -> OpenAiStream:
        return OpenAiStream(self, route.served_model)

    def response_body(self, text: str, final: RoutedCompletion) -> dict[str, Any]:
        completion = final.completion
        text += completion.trailing_text
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": completion.finish_reason.value,
            "logprobs": None,
        }
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            **self._head(final.route.served_model),
            "object": "chat.completion" if self.chat else "text_completion",
            "choices": [choice],
            "usage": _usage(completion),
        }

    def _head(self, model: str) -> dict[str, Any]:
        prefix = "chatcmpl-" if self.chat else "cmpl-"
        return {"id": prefix + self.id, "created": self.created, "model": model}


class OpenAiStream:
    """Chunks as OpenAI sends them: a role chunk (chat), one per piece of text, one
    with the finish reason, with `include_usage` one with usage, then `[DONE]`."""

    def __init__(self, call: OpenAiCall, model: str) -> None:
        self._call = call
        self._head = {
            **call._head(model),
            "object": "chat.completion.chunk" if call.chat else "text_completion",
        }

    def opening(self) -> bytes:
        if not self._call.chat:
            return b""
        return self._chunk({"role": "assistant", "content": ""}, None)

    def delta(self, text: str) -> bytes:
        if not text:
            return b""
        return self._chunk({"content": text} if self._call.chat else text, None)

    def closing(self, completion: Completion) -> bytes:
        parts = [
            self.delta(completion.trailing_text),
            self._chunk({} if self._call.chat else "", completion.finish_reason.value),
        ]
        if self._call.include_usage:
            parts.append(sse({**self._head, "choices": [], "usage": _usage(completion)}))
        parts.append(sse("[DONE]"))
        return b"".join(parts)

    def _chunk(self, delta: dict[str, str] | str, finish_reason: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
        if isinstance(delta, dict):
            choice["delta"] = delta
        else:
            choice["text"] = delta
        chunk: dict[str, Any] = {**self._head, "choices": [choice]}
        if self._call.include_usage:
            chunk["usage"] = None
        return sse(chunk)


def _usage(completion: Completion) -> dict[str, int]:
    usage = completion.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def parse_chat(document: Any) -> OpenAiCall:
    body = Body(document)
    turns = []
    for position, item in enumerate(body.items("messages")):
        message = Body(item, f"messages[{position}]")
        role = message.string("role")
        if role not in _ROLES:
            raise BadField(
                message.where("role"),
                f"{role!r} is not supported; use system, developer, user or assistant "
                "(tools are not supported)",
            )
        content = message.raw("content")
        text = "" if content is None else text_turns(content, message.where("content"))
        turns.append(ChatTurn(_ROLES[role], text))
    body.refuse("tools", "tools are not supported by this router")
    body.refuse("functions", "functions are not supported by this router")
    body.refuse("tool_choice", "tools are not supported by this router", allowed="none")
    body.refuse("logprobs", "logprobs are not supported by this router", allowed=False)
    body.refuse("top_logprobs", "logprobs are not supported by this router")
    if body.has("response_format"):
        kind = Body(body.raw("response_format"), "response_format").string("type")
        if kind != "text":
            raise BadField("response_format.type", f"only 'text' is supported, not {kind!r}")
    max_tokens = body.integer("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.integer("max_tokens")
    return _call(body, max_tokens, chat=True, messages=tuple(turns))


def parse_completion(document: Any) -> OpenAiCall:
    body = Body(document)
    prompt = body.raw("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadField("prompt", "expected a string (one prompt per request)")
    body.refuse("echo", "echo is not supported by this router", allowed=False)
    body.refuse("suffix", "suffix is not supported by this router")
    body.refuse("logprobs", "logprobs are not supported by this router")
    body.refuse("best_of", "best_of > 1 is not supported: send separate requests", allowed=1)
    return _call(body, body.integer("max_tokens"), chat=False, prompt=prompt)


def _call(
    body: Body,
    max_tokens: int | None,
    *,
    chat: bool,
    prompt: str = "",
    messages: tuple[ChatTurn, ...] = (),
) -> OpenAiCall:
    n = body.integer("n")
    if n is not None and n != 1:
        raise BadField(
            "n", f"n={n} is not supported: this router returns one choice; send n requests"
        )
    include_usage = False
    if body.has("stream_options"):
        include_usage = Body(body.raw("stream_options"), "stream_options").boolean("include_usage")
    return OpenAiCall(
        request=GenerationRequest(
            model=body.string("model", default=""),
            prompt=prompt,
            messages=messages,
            max_tokens=max_tokens,
            temperature=body.number("temperature"),
            top_p=body.number("top_p"),
            stop=body.strings("stop"),
            seed=body.integer("seed"),
        ),
        stream=body.boolean("stream"),
        chat=chat,
        include_usage=include_usage,
    )


class OpenAiDialect:
    def error_body(self, problem: Problem, models: Sequence[str]) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": problem.message,
            "type": _ERROR_TYPES[problem.kind],
            "param": problem.field,
            "code": _ERROR_CODES.get(problem.kind),
        }
        if problem.model_not_found:
            error.update(param="model", code="model_not_found", available_models=list(models))
        return {"error": error}

    def stream_error(self, problem: Problem) -> bytes:
        # The openai SDK raises APIError for a chunk with an `error` member.
        return sse(self.error_body(problem, ())) + sse("[DONE]")

    def models_body(self, names: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": owner}
                for name, owner in names
            ],
        }
