"""Anthropic's Messages API: /v1/messages requests to GenerationRequest, answers and
streams (message_start ... message_stop) and errors back in Anthropic's shapes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from warmpath_common.errors import InvalidRequest
from warmpath_common.generation import ChatTurn, Completion, FinishReason, GenerationRequest
from warmpath_router.decision import RoutedCompletion, RouteTaken
from warmpath_router.http_api.translation import (
    BadField,
    Body,
    Problem,
    ProblemKind,
    sse,
    text_turns,
)

__all__ = [
    "VERSION_HEADER",
    "AnthropicCall",
    "AnthropicDialect",
    "AnthropicStream",
    "check_version",
    "parse_messages",
]

VERSION_HEADER = "anthropic-version"
# The Messages API's request, answer and streaming shapes this dialect speaks are those
# of 2023-06-01 (the streaming format changed then); later versions keep them.
OLDEST_VERSION = "2023-06-01"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STOP_REASONS = {FinishReason.STOP: "end_turn", FinishReason.LENGTH: "max_tokens"}
_ERROR_TYPES = {
    ProblemKind.INVALID_REQUEST: "invalid_request_error",
    ProblemKind.AUTHENTICATION: "authentication_error",
    ProblemKind.PERMISSION: "permission_error",
    ProblemKind.NOT_FOUND: "not_found_error",
    ProblemKind.TOO_LARGE: "request_too_large",
    ProblemKind.RATE_LIMIT: "rate_limit_error",
    ProblemKind.UNAVAILABLE: "overloaded_error",
    ProblemKind.TIMEOUT: "timeout_error",
    ProblemKind.INTERNAL: "api_error",
}


def check_version(headers: Mapping[str, str]) -> None:
    """Anthropic's API requires `anthropic-version`, and so does this one: a version
    from 2023-06-01 on (each SDK release sends its own date)."""
    version = headers.get(VERSION_HEADER)
    if version is None:
        raise InvalidRequest(
            f"{VERSION_HEADER}: header is required (e.g. {VERSION_HEADER}: {OLDEST_VERSION})"
        )
    if not _VERSION.match(version) or version < OLDEST_VERSION:
        raise InvalidRequest(
            f"{VERSION_HEADER}: {version!r} is not supported; send {OLDEST_VERSION} or later"
        )


@dataclass(frozen=True, slots=True)
class AnthropicCall:
    request: GenerationRequest
    stream: bool
    id: str = field(default_factory=lambda: "msg_" + uuid.uuid4().hex)

    def renderer(self, route: RouteTaken) -> AnthropicStream:
        return AnthropicStream(self.id, route.served_model)

    def response_body(self, text: str, final: RoutedCompletion) -> dict[str, Any]:
        completion = final.completion
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": final.route.served_model,
            "content": [{"type": "text", "text": text + completion.trailing_text}],
            "stop_reason": _STOP_REASONS[completion.finish_reason],
            "stop_sequence": None,
            "usage": _usage(completion),
        }


class AnthropicStream:
    """Events in Anthropic's order: message_start, content_block_start, ping,
    content_block_delta..., content_block_stop, message_delta, message_stop.

    Input tokens are counted by the model server only when it finishes, so
    message_start says 0 and message_delta carries the real count."""

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model

    def opening(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return b"".join(
            [
                _event("message_start", {"message": message}),
                _event(
                    "content_block_start",
                    {"index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                _event("ping", {}),
            ]
        )

    def delta(self, text: str) -> bytes:
        if not text:
            return b""
        return _event(
            "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}
        )

    def closing(self, completion: Completion) -> bytes:
        return b"".join(
            [
                self.delta(completion.trailing_text),
                _event("content_block_stop", {"index": 0}),
                _event(
                    "message_delta",
                    {
                        "delta": {
                            "stop_reason": _STOP_REASONS[completion.finish_reason],
                            "stop_sequence": None,
                        },
                        "usage": _usage(completion),
                    },
                ),
                _event("message_stop", {}),
            ]
        )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return sse({"type": kind, **data}, event=kind)


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "input_tokens": completion.usage.input_tokens,
        "output_tokens": completion.usage.output_tokens,
    }


def parse_messages(document: Any) -> AnthropicCall:
    body = Body(document)
    turns: list[ChatTurn] = []
    if body.has("system"):
        turns.append(ChatTurn("system", text_turns(body.raw("system"), "system")))
    for position, item in enumerate(body.items("messages")):
        message = Body(item, f"messages[{position}]")
        role = message.string("role")
        if role not in ("user", "assistant"):
            raise BadField(
                message.where("role"), f"{role!r} is not a role here; use user or assistant"
            )
        turns.append(ChatTurn(role, text_turns(message.raw("content"), message.where("content"))))
    max_tokens = body.integer("max_tokens")
    if max_tokens is None:
        raise BadField("max_tokens", "required")
    body.refuse("tools", "tools are not supported by this router")
    thinking = body.raw("thinking")
    if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
        raise BadField("thinking", "extended thinking is not supported by this router")
    return AnthropicCall(
        request=GenerationRequest(
            model=body.string("model", default=""),
            messages=tuple(turns),
            max_tokens=max_tokens,
            temperature=body.number("temperature"),
            top_p=body.number("top_p"),
            stop=body.strings("stop_sequences"),
        ),
        stream=body.boolean("stream"),
    )


class AnthropicDialect:
    def error_body(self, problem: Problem, models: Sequence[str]) -> dict[str, Any]:
        error: dict[str, Any] = {"type": _ERROR_TYPES[problem.kind], "message": problem.message}
        if problem.model_not_found:
            error["available_models"] = list(models)
        return {"type": "error", "error": error}

    def stream_error(self, problem: Problem) -> bytes:
        return sse(self.error_body(problem, ()), event="error")

    def models_body(self, names: Sequence[tuple[str, str]]) -> dict[str, Any]:
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "1970-01-01T00:00:00Z",
            }
            for name, _ in names
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
