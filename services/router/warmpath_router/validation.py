"""Request checks that run before any backend work. Messages say what to fix.

A request is checked once, on its way in (`check_request`); what passed travels on as a
CheckedRequest. Only a fallback model's own limits are checked later, when it is tried.
"""

from __future__ import annotations

from dataclasses import dataclass

from warmpath_common.config import ModelSpec, RouterSettings
from warmpath_common.errors import InvalidRequest, PermissionDenied
from warmpath_common.generation import GenerationRequest
from warmpath_common.security import Caller
from warmpath_router.registry import ModelRegistry, ResolvedModel

__all__ = [
    "CHAT_ROLES",
    "CheckedRequest",
    "check_against_model",
    "check_permission",
    "check_request",
    "check_shape",
]

CHAT_ROLES = frozenset({"system", "user", "assistant"})
_MAX_STOP_SEQUENCES = 8
_MAX_TEMPERATURE = 2.0


def check_shape(request: GenerationRequest, settings: RouterSettings) -> None:
    """Checks that do not depend on which model serves the request."""
    if request.prompt and request.messages:
        raise InvalidRequest("set either prompt or messages, not both")
    if not request.prompt.strip() and not request.messages:
        raise InvalidRequest("prompt is empty: set prompt, or messages with at least one turn")
    if len(request.messages) > settings.max_messages:
        raise InvalidRequest(
            f"too many messages: {len(request.messages)} (at most {settings.max_messages})"
        )
    for position, turn in enumerate(request.messages):
        if turn.role not in CHAT_ROLES:
            # The bad value is not quoted: it is caller text and may be prompt text.
            raise InvalidRequest(
                f"messages[{position}].role must be one of " + ", ".join(sorted(CHAT_ROLES))
            )
    if request.messages and not any(turn.content.strip() for turn in request.messages):
        raise InvalidRequest("every message is empty: give at least one turn some content")
    size = len(request.prompt) + sum(len(turn.content) for turn in request.messages)
    if size > settings.max_prompt_chars:
        raise InvalidRequest(
            f"prompt is {size} characters; the limit is {settings.max_prompt_chars} "
            "(router.max_prompt_chars)"
        )
    if request.temperature is not None and not 0.0 <= request.temperature <= _MAX_TEMPERATURE:
        raise InvalidRequest(
            f"temperature {request.temperature:g} is out of range; use 0 to {_MAX_TEMPERATURE:g}"
        )
    if request.top_p is not None and not (0.0 < request.top_p <= 1.0):
        raise InvalidRequest(f"top_p {request.top_p:g} is out of range; use a value in (0, 1]")
    if len(request.stop) > _MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"too many stop sequences: {len(request.stop)} (at most {_MAX_STOP_SEQUENCES})"
        )
    if any(not stop for stop in request.stop):
        raise InvalidRequest("stop sequences must not be empty strings")


def check_against_model(request: GenerationRequest, spec: ModelSpec) -> None:
    """Checks that depend on the model that will serve the request."""
    if request.max_tokens is None:
        return
    if request.max_tokens <= 0:
        raise InvalidRequest(f"max_tokens must be positive (got {request.max_tokens})")
    if request.max_tokens > spec.context_length:
        raise InvalidRequest(
            f"max_tokens {request.max_tokens} exceeds {spec.name}'s context length "
            f"{spec.context_length}"
        )


def check_permission(caller: Caller, resolved: ResolvedModel) -> None:
    """The caller may use the model the request resolved to."""
    if not caller.may_use(resolved.spec.name):
        how = (
            f" (which {resolved.requested!r} resolved to)"
            if resolved.requested != resolved.spec.name
            else ""
        )
        raise PermissionDenied(
            f"caller {caller.name} may not use {resolved.spec.name}{how}; "
            f"allowed: {', '.join(sorted(caller.models))}"
        )


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    """A request that passed every check on its way in: its shape, the model it resolved
    to, the caller's permission for that model, and that model's limits."""

    request: GenerationRequest
    resolved: ResolvedModel
    caller: Caller


def check_request(
    request: GenerationRequest, settings: RouterSettings, registry: ModelRegistry, caller: Caller
) -> CheckedRequest:
    """The one check of a request on its way in (Route and Generate alike)."""
    check_shape(request, settings)
    resolved = registry.resolve(request.model, request.text)
    check_permission(caller, resolved)
    check_against_model(request, resolved.spec)
    return CheckedRequest(request, resolved, caller)
