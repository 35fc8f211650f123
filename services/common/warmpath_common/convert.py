"""Protobuf <-> domain conversions shared by servicers and clients."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from warmpath.v1 import generate_pb2, gpu_agent_pb2
from warmpath_common.config import BackendKindName
from warmpath_common.errors import InvalidRequest
from warmpath_common.generation import (
    AdapterEvent,
    ChatTurn,
    Completion,
    Endpoint,
    FinishReason,
    GenerationRequest,
    Queued,
    TextDelta,
    Usage,
)

__all__ = [
    "BACKEND_FROM_PROTO",
    "BACKEND_TO_PROTO",
    "RESIDENCY_STATE_FROM_PROTO",
    "RESIDENCY_STATE_TO_PROTO",
    "PlacementInfo",
    "ResidencyState",
    "endpoint_from_proto",
    "endpoint_to_proto",
    "event_from_proto",
    "event_to_proto",
    "placement_from_proto",
    "placement_to_proto",
    "request_from_proto",
    "request_to_proto",
]

_FINISH_TO_PROTO = {
    FinishReason.STOP: generate_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: generate_pb2.FINISH_REASON_LENGTH,
}
_FINISH_FROM_PROTO = {value: key for key, value in _FINISH_TO_PROTO.items()}

BACKEND_TO_PROTO: dict[BackendKindName, generate_pb2.BackendKind.ValueType] = {
    BackendKindName.LLAMA_CPP: generate_pb2.BACKEND_KIND_LLAMA_CPP,
    BackendKindName.VLLM: generate_pb2.BACKEND_KIND_VLLM,
    BackendKindName.SGLANG: generate_pb2.BACKEND_KIND_SGLANG,
    BackendKindName.OLLAMA: generate_pb2.BACKEND_KIND_OLLAMA,
}
BACKEND_FROM_PROTO = {value: key for key, value in BACKEND_TO_PROTO.items()}


def endpoint_to_proto(endpoint: Endpoint) -> gpu_agent_pb2.BackendEndpoint:
    return gpu_agent_pb2.BackendEndpoint(
        kind=BACKEND_TO_PROTO[endpoint.kind],
        base_url=endpoint.base_url,
        served_model_id=endpoint.served_model_id,
    )


def endpoint_from_proto(message: gpu_agent_pb2.BackendEndpoint) -> Endpoint:
    kind = BACKEND_FROM_PROTO.get(message.kind)
    if kind is None:
        raise InvalidRequest("endpoint.kind must name a backend kind")
    return Endpoint(kind, message.base_url, message.served_model_id)


class ResidencyState(StrEnum):
    """Where a model stands on a host: the agent's record of it, the router's replica."""

    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"
    UNRESPONSIVE = "unresponsive"
    """Its server runs but fails the agent's readiness probes (server_watch.py): never chosen."""
    ASLEEP = "asleep"
    """Off its GPUs, weights held in host RAM (the warm tier); the next request wakes it."""


RESIDENCY_STATE_TO_PROTO: dict[ResidencyState, gpu_agent_pb2.ResidencyState.ValueType] = {
    ResidencyState.LOADING: gpu_agent_pb2.RESIDENCY_STATE_LOADING,
    ResidencyState.READY: gpu_agent_pb2.RESIDENCY_STATE_READY,
    ResidencyState.UNLOADING: gpu_agent_pb2.RESIDENCY_STATE_UNLOADING,
    ResidencyState.FAILED: gpu_agent_pb2.RESIDENCY_STATE_FAILED,
    ResidencyState.UNRESPONSIVE: gpu_agent_pb2.RESIDENCY_STATE_UNRESPONSIVE,
    ResidencyState.ASLEEP: gpu_agent_pb2.RESIDENCY_STATE_ASLEEP,
}
RESIDENCY_STATE_FROM_PROTO = {value: key for key, value in RESIDENCY_STATE_TO_PROTO.items()}


@dataclass(frozen=True, slots=True)
class PlacementInfo:
    """Where each part of a model lives on its host (the Placement message, as data)."""

    layout: str
    """single, layer_split, tensor_parallel or offload."""
    gpu_indexes: tuple[int, ...]
    gpu_uuids: tuple[str, ...]
    layer_shares: tuple[float, ...] = ()
    gpu_memory_bytes: tuple[int, ...] = ()
    gpu_layers: int = 0
    total_layers: int = 0
    host_memory_bytes: int = 0
    expected_slowdown: float = 1.0
    description: str = ""
    reason: str = ""


_LAYOUT_TO_PROTO = {
    "single": generate_pb2.PLACEMENT_LAYOUT_SINGLE_GPU,
    "layer_split": generate_pb2.PLACEMENT_LAYOUT_LAYER_SPLIT,
    "tensor_parallel": generate_pb2.PLACEMENT_LAYOUT_TENSOR_PARALLEL,
    "offload": generate_pb2.PLACEMENT_LAYOUT_OFFLOAD,
}
_LAYOUT_FROM_PROTO = {value: key for key, value in _LAYOUT_TO_PROTO.items()}


def placement_to_proto(info: PlacementInfo) -> generate_pb2.Placement:
    return generate_pb2.Placement(
        layout=_LAYOUT_TO_PROTO.get(info.layout, generate_pb2.PLACEMENT_LAYOUT_UNSPECIFIED),
        gpu_indexes=list(info.gpu_indexes),
        gpu_uuids=list(info.gpu_uuids),
        layer_shares=list(info.layer_shares),
        gpu_memory_bytes=list(info.gpu_memory_bytes),
        gpu_layers=info.gpu_layers,
        total_layers=info.total_layers,
        host_memory_bytes=info.host_memory_bytes,
        expected_slowdown=info.expected_slowdown,
        description=info.description,
        reason=info.reason,
    )


def placement_from_proto(message: generate_pb2.Placement) -> PlacementInfo | None:
    """None for an unset message (an agent from before placements)."""
    if not message.gpu_indexes:
        return None
    return PlacementInfo(
        layout=_LAYOUT_FROM_PROTO.get(message.layout, "single"),
        gpu_indexes=tuple(message.gpu_indexes),
        gpu_uuids=tuple(message.gpu_uuids),
        layer_shares=tuple(message.layer_shares),
        gpu_memory_bytes=tuple(message.gpu_memory_bytes),
        gpu_layers=message.gpu_layers,
        total_layers=message.total_layers,
        host_memory_bytes=message.host_memory_bytes,
        expected_slowdown=message.expected_slowdown,
        description=message.description,
        reason=message.reason,
    )


def request_from_proto(message: generate_pb2.GenerateRequest) -> GenerationRequest:
    return GenerationRequest(
        model=message.model,
        prompt=message.prompt,
        messages=tuple(ChatTurn(turn.role, turn.content) for turn in message.messages),
        max_tokens=message.max_tokens if message.HasField("max_tokens") else None,
        temperature=message.temperature if message.HasField("temperature") else None,
        top_p=message.top_p if message.HasField("top_p") else None,
        stop=tuple(message.stop),
        seed=message.seed if message.HasField("seed") else None,
    )


def request_to_proto(request: GenerationRequest) -> generate_pb2.GenerateRequest:
    message = generate_pb2.GenerateRequest(
        model=request.model,
        prompt=request.prompt,
        messages=[
            generate_pb2.ChatMessage(role=t.role, content=t.content) for t in request.messages
        ],
        stop=list(request.stop),
    )
    if request.max_tokens is not None:
        message.max_tokens = request.max_tokens
    if request.temperature is not None:
        message.temperature = request.temperature
    if request.top_p is not None:
        message.top_p = request.top_p
    if request.seed is not None:
        message.seed = request.seed
    return message


def event_to_proto(event: AdapterEvent) -> generate_pb2.GenerateResponse:
    if isinstance(event, TextDelta):
        return generate_pb2.GenerateResponse(text=event.text)
    if isinstance(event, Queued):
        return generate_pb2.GenerateResponse(queued=generate_pb2.QueuePosition(ahead=event.ahead))
    return generate_pb2.GenerateResponse(
        text=event.trailing_text,
        finish_reason=_FINISH_TO_PROTO[event.finish_reason],
        usage=generate_pb2.Usage(
            input_tokens=event.usage.input_tokens, output_tokens=event.usage.output_tokens
        ),
    )


def event_from_proto(message: generate_pb2.GenerateResponse) -> AdapterEvent:
    if message.HasField("queued"):
        return Queued(message.queued.ahead)
    if message.finish_reason == generate_pb2.FINISH_REASON_UNSPECIFIED:
        return TextDelta(message.text)
    return Completion(
        finish_reason=_FINISH_FROM_PROTO[message.finish_reason],
        usage=Usage(message.usage.input_tokens, message.usage.output_tokens),
        trailing_text=message.text,
    )
