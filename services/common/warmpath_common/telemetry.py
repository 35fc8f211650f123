"""Tracing shared by the three services: the provider, RPC spans, GenAI attributes.

Configured by the standard OTEL_* environment; docs/operations.md says how, and what
one request's trace looks like. Server spans are opened by Warmpath's own plumbing
(warmpath_common.call_plumbing), not an interceptor, which cost several times as much
per call. Prompt text is recorded only with WARMPATH_TRACE_CONTENT=true.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GenAiOperationNameValues,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_GRPC_STATUS_CODE,
    RPC_METHOD,
    RPC_SERVICE,
    RPC_SYSTEM,
    RpcSystemValues,
)
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from warmpath_common.convert import PlacementInfo
from warmpath_common.errors import status_of
from warmpath_common.generation import GenerationRequest

__all__ = [
    "PROMPTS_NOT_RECORDED",
    "TraceContentPolicy",
    "activated",
    "client_call_span",
    "current_trace_id",
    "end_rpc_span",
    "placement_attributes",
    "request_attributes",
    "setup_tracing",
    "shutdown_tracing",
    "start_server_span",
    "traced_method",
]

logger = logging.getLogger(__name__)

# Long-lived or high-frequency RPCs whose spans would only be noise: health
# probes, reflection and the agents' never-ending state streams.
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_UNTRACED_METHODS = frozenset({"/warmpath.v1.GpuAgent/WatchState"})
# Read-only RPCs (explain a route, list models, read state) answer what they
# decided in the reply itself and may be called at high rates by dashboards:
# they join a caller's trace but never start one of their own.
_TRACED_ONLY_IN_CALLERS_TRACE = frozenset(
    {
        "/warmpath.v1.Router/Route",
        "/warmpath.v1.Router/ListModels",
        "/warmpath.v1.GpuAgent/GetState",
    }
)

# The attribute values, looked up once rather than per span.
_GRPC = RpcSystemValues.GRPC.value
_CHAT = GenAiOperationNameValues.CHAT.value
_TEXT_COMPLETION = GenAiOperationNameValues.TEXT_COMPLETION.value

_tracer = trace.get_tracer("warmpath.grpc")


@dataclass(frozen=True, slots=True)
class TraceContentPolicy:
    """Whether prompt and completion text may be recorded in spans. Off by default."""

    record_content: bool = False


PROMPTS_NOT_RECORDED = TraceContentPolicy(record_content=False)


def setup_tracing(default_service_name: str, environ: Mapping[str, str]) -> TracerProvider | None:
    """Installs the global tracer provider from the OTEL_* environment."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: default_service_name}))
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        # Batched in a background thread with a bounded queue: a slow or dead
        # collector drops spans, it never blocks a request.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        logger.info("exporting traces over OTLP/gRPC")
    trace.set_tracer_provider(provider)
    return provider


def traced_method(method: str) -> bool:
    """Whether a server opens a span for `method` (a "/package.Service/Method" path)."""
    return not method.startswith(_UNTRACED_PREFIXES) and method not in _UNTRACED_METHODS


def start_server_span(method: str, metadata: Sequence[tuple[str, Any]] | None) -> Span | None:
    """The SERVER span for one incoming call, continuing the caller's W3C trace context;
    None for a read-only RPC whose caller is not tracing.

    Opened by Warmpath's own server plumbing (warmpath_common.call_plumbing) rather
    than opentelemetry-instrumentation-grpc's interceptor, which cost a no-op RPC
    a third of its throughput; names and attributes follow the same RPC
    conventions (span name is the method path, as that instrumentation names it).
    """
    carrier = dict(metadata) if metadata else {}
    if "traceparent" in carrier:
        parent = propagate.extract(carrier)
    elif method in _TRACED_ONLY_IN_CALLERS_TRACE:
        return None
    else:
        parent = None
    service, _, name = method[1:].rpartition("/")
    return _tracer.start_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={RPC_SYSTEM: _GRPC, RPC_SERVICE: service, RPC_METHOD: name},
    )


def end_rpc_span(span: Span | None, code: grpc.StatusCode) -> None:
    if span is None:
        return
    span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def activated(span: Span | None) -> contextlib.AbstractContextManager[object]:
    """Makes `span` current (without ending it on exit); a no-op for None."""
    if span is None:
        return contextlib.nullcontext()
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


@contextlib.contextmanager
def client_call_span(method: str) -> Iterator[tuple[tuple[str, str], ...]]:
    """A CLIENT span around one outgoing call to `method`; yields the call's metadata,
    which carries the span's W3C trace context to the peer.

    Exceptions raised inside set the span's status: a WarmpathError its own code
    (clients translate statuses into them), cancellation CANCELLED.
    """
    service, _, name = method[1:].rpartition("/")
    span = _tracer.start_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={RPC_SYSTEM: _GRPC, RPC_SERVICE: service, RPC_METHOD: name},
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    code = grpc.StatusCode.OK
    try:
        yield tuple(carrier.items())
    except BaseException as error:
        code = status_of(error)
        raise
    finally:
        end_rpc_span(span, code)


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or "" when no span is recording."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def shutdown_tracing(provider: TracerProvider | None) -> None:
    if provider is not None:
        provider.shutdown()


def request_attributes(request: GenerationRequest, model: str) -> dict[str, AttributeValue]:
    """The GenAI request attributes for a span: what was asked, never the prompt text."""
    attributes: dict[str, AttributeValue] = {
        GEN_AI_OPERATION_NAME: _CHAT if request.is_chat else _TEXT_COMPLETION,
        GEN_AI_REQUEST_MODEL: model,
    }
    optional = {
        GEN_AI_REQUEST_MAX_TOKENS: request.max_tokens,
        GEN_AI_REQUEST_TEMPERATURE: request.temperature,
        GEN_AI_REQUEST_TOP_P: request.top_p,
        GEN_AI_REQUEST_SEED: request.seed,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    return attributes


def placement_attributes(info: PlacementInfo) -> dict[str, AttributeValue]:
    """Where a model lives, for a span: every GPU (indexes and UUIDs), the layout and,
    when offloaded, how many layers are in host RAM. No semantic convention names a
    model spread over GPUs, so the names are `warmpath.*`, as the agent's spans use."""
    attributes: dict[str, AttributeValue] = {
        "warmpath.gpu.indexes": list(info.gpu_indexes),
        "warmpath.gpu.uuids": list(info.gpu_uuids),
        "warmpath.placement.layout": info.layout,
        "warmpath.placement": info.description,
        "warmpath.placement.expected_slowdown": info.expected_slowdown,
    }
    if info.layer_shares:
        attributes["warmpath.placement.layer_shares"] = list(info.layer_shares)
    if info.total_layers:
        attributes["warmpath.placement.gpu_layers"] = info.gpu_layers
        attributes["warmpath.placement.total_layers"] = info.total_layers
    if info.layout == "offload":
        attributes["warmpath.placement.offloaded_layers"] = info.total_layers - info.gpu_layers
        attributes["warmpath.placement.host_memory_bytes"] = info.host_memory_bytes
    if info.reason:
        attributes["warmpath.placement.reason"] = info.reason
    return attributes
