"""What both HTTP dialects share: reading JSON fields with errors that name them,
the route as `x-warmpath-*` headers, errors as problems with an HTTP status, SSE."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import grpc

from warmpath_common.errors import InvalidRequest, ModelNotFound, WarmpathError, status_of
from warmpath_common.generation import Completion, GenerationRequest
from warmpath_router.decision import RoutedCompletion, RouteTaken

__all__ = [
    "BadField",
    "Body",
    "Call",
    "Dialect",
    "Problem",
    "ProblemKind",
    "StreamRenderer",
    "problem_of",
    "route_headers",
    "sse",
    "text_turns",
    "timeout_from",
]

ROUTE_HEADER_PREFIX = "x-warmpath-"
TIMEOUT_HEADER = "x-warmpath-timeout-seconds"
"""Optional request header: the request's deadline in seconds (default router's
request_timeout_seconds), as a gRPC caller's deadline."""


class BadField(InvalidRequest):
    """A request field the HTTP layer refuses; `field` is its path, e.g. messages[2].role."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ProblemKind(StrEnum):
    """What went wrong, in words each dialect turns into its own error type."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    RATE_LIMIT = "rate_limit"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Problem:
    """An error as an HTTP answer, before a dialect shapes its body."""

    status: int
    kind: ProblemKind
    message: str
    field: str | None = None
    model_not_found: bool = False
    retry_after: bool = False


# The one place gRPC statuses (which every WarmpathError declares) become HTTP statuses.
_BY_STATUS: dict[grpc.StatusCode, tuple[int, ProblemKind]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, ProblemKind.INVALID_REQUEST),
    grpc.StatusCode.FAILED_PRECONDITION: (409, ProblemKind.INVALID_REQUEST),
    grpc.StatusCode.UNAUTHENTICATED: (401, ProblemKind.AUTHENTICATION),
    grpc.StatusCode.PERMISSION_DENIED: (403, ProblemKind.PERMISSION),
    grpc.StatusCode.NOT_FOUND: (404, ProblemKind.NOT_FOUND),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, ProblemKind.RATE_LIMIT),
    grpc.StatusCode.UNAVAILABLE: (503, ProblemKind.UNAVAILABLE),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, ProblemKind.TIMEOUT),
    # The caller went away: nobody reads the answer, but logs and spans show it.
    grpc.StatusCode.CANCELLED: (499, ProblemKind.INVALID_REQUEST),
}


def problem_of(error: WarmpathError) -> Problem:
    status, kind = _BY_STATUS.get(status_of(error), (500, ProblemKind.INTERNAL))
    return Problem(
        status,
        kind,
        error.message if status != 500 else "internal error",
        field=error.field if isinstance(error, BadField) else None,
        model_not_found=isinstance(error, ModelNotFound),
        retry_after=status == 429,
    )


def route_headers(route: RouteTaken) -> dict[str, str]:
    """The route a request took, as response headers (docs/http-api.md lists them)."""
    headers = {
        "requested-model": route.requested_model,
        "served-model": route.served_model,
        "resolution": route.resolution.value,
        "host": route.host,
        "gpu-index": str(route.gpu_index),
        "gpu-uuid": route.gpu_uuid,
        "backend": route.backend.value,
        "cold-start": "true" if route.cold_start else "false",
        "load-seconds": f"{route.load_seconds:.3f}",
        "woken": "true" if route.woken else "false",
        "fallback-hops": json.dumps(
            [
                {"from": h.from_model, "to": h.to_model, "reason": h.reason}
                for h in route.fallback_hops
            ]
        ),
        "trace-id": route.trace_id,
    }
    if route.alias:
        headers["alias"] = route.alias
    if route.auto_class:
        headers["auto-class"] = route.auto_class
        headers["auto-confidence"] = f"{route.auto_confidence:.2f}"
    # json.dumps escapes non-ASCII; header values must be single-line latin-1.
    return {ROUTE_HEADER_PREFIX + key: _header_safe(value) for key, value in headers.items()}


def _header_safe(value: str) -> str:
    return value.encode("ascii", "backslashreplace").decode().replace("\r", " ").replace("\n", " ")


def timeout_from(headers: Mapping[str, str]) -> float | None:
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadField(TIMEOUT_HEADER, f"expected a positive number of seconds, got {raw!r}")
    return seconds


def sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class Body:
    """A JSON request body, read field by field; a wrong field raises BadField naming it."""

    def __init__(self, document: Any, path: str = "") -> None:
        if not isinstance(document, dict):
            raise BadField(path or "body", "expected a JSON object")
        self._document: dict[str, Any] = document
        self._path = path

    def where(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return self._document.get(name) is not None

    def raw(self, name: str) -> Any:
        return self._document.get(name)

    def string(self, name: str, default: str | None = None) -> str:
        value: str | None = self._typed(name, (str,), "a string")
        if value is None:
            if default is None:
                raise BadField(self.where(name), "required")
            return default
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value: bool | None = self._typed(name, (bool,), "true or false")
        return default if value is None else value

    def integer(self, name: str) -> int | None:
        value: int | None = self._typed(name, (int,), "an integer")
        return value

    def number(self, name: str) -> float | None:
        value: float | None = self._typed(name, (int, float), "a number")
        return None if value is None else float(value)

    def strings(self, name: str) -> tuple[str, ...]:
        """A string or a list of strings (as OpenAI's `stop`)."""
        value = self._document.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise BadField(self.where(name), "expected a string or a list of strings")

    def items(self, name: str) -> list[Any]:
        value = self._document.get(name)
        if not isinstance(value, list):
            raise BadField(self.where(name), f"expected a list, got {_kind(value)}")
        return value

    def _typed(self, name: str, types: tuple[type, ...], expected: str) -> Any:
        """The field's value (None when unset), refused with BadField unless of `types`.

        JSON's true and false are not numbers, though Python's bool is an int."""
        value = self._document.get(name)
        if value is None:
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise BadField(self.where(name), f"expected {expected}, got {_kind(value)}")
        return value

    def refuse(self, name: str, why: str, allowed: object = None) -> None:
        """Refuses a feature this router does not offer, unless unset or `allowed`."""
        value = self._document.get(name)
        if value is not None and value != allowed:
            raise BadField(self.where(name), why)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), "a number"
    )


class StreamRenderer(Protocol):
    """One streamed answer in a dialect's SSE events."""

    def opening(self) -> bytes: ...

    def delta(self, text: str) -> bytes: ...

    def closing(self, completion: Completion) -> bytes: ...


class Call(Protocol):
    """One parsed generation request of a dialect."""

    @property
    def request(self) -> GenerationRequest: ...

    @property
    def stream(self) -> bool: ...

    def renderer(self, route: RouteTaken) -> StreamRenderer: ...

    def response_body(self, text: str, final: RoutedCompletion) -> dict[str, Any]: ...


class Dialect(Protocol):
    """How one API shapes its errors."""

    def error_body(self, problem: Problem, models: Sequence[str]) -> dict[str, Any]: ...

    def stream_error(self, problem: Problem) -> bytes: ...


def text_turns(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (both APIs' shape)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadField(where, f"expected a string or a list of text parts, got {_kind(content)}")
    texts = []
    for position, part in enumerate(content):
        block = Body(part, f"{where}[{position}]")
        kind = block.string("type")
        if kind != "text":
            raise BadField(block.where("type"), f"only text parts are supported here, not {kind!r}")
        texts.append(block.string("text"))
    return "".join(texts)
