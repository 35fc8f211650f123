"""Plain domain objects for a generate request and its streamed answer.

Servicers convert protobuf messages to these (see ``convert``) so that the
domain modules never import grpc or protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from warmpath_common.config import BackendKindName

__all__ = [
    "AdapterEvent",
    "ChatTurn",
    "Completion",
    "Endpoint",
    "FinishReason",
    "GenerationRequest",
    "Queued",
    "StreamEvent",
    "TextDelta",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One model on one inference server: where the agent says it is served, and
    where the adapter sends its requests (the protobuf BackendEndpoint, as data; see
    convert)."""

    kind: BackendKindName
    base_url: str
    served_model_id: str


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What the caller asked for. `model` is the name as sent (may be an alias)."""

    model: str
    prompt: str = ""
    messages: tuple[ChatTurn, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)

    def text(self) -> str:
        """The text a classifier reads: the prompt, or every turn's content."""
        return self.prompt if not self.messages else "\n".join(t.content for t in self.messages)


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class TextDelta:
    """One piece of streamed text."""

    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    """End of a stream: why it ended and what it cost."""

    finish_reason: FinishReason
    usage: Usage
    trailing_text: str = field(default="")


@dataclass(frozen=True, slots=True)
class Queued:
    """From an adapter, before the first token: the request waits behind `ahead` others
    for its model server; 0: it has just been sent to the server. Time spent waiting is
    not silence (see the router's first-token timeout). Never reaches a caller."""

    ahead: int


StreamEvent = TextDelta | Completion
"""What a model server's answer is made of."""
AdapterEvent = TextDelta | Completion | Queued
"""What an adapter streams to the router: the answer, and where the request waits."""
