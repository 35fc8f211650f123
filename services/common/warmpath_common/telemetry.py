"""Tracing set-up shared by the three services, and the GenAI attribute names they use.

Configuration is the standard OpenTelemetry environment (read by the SDK
itself): `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) turns on
OTLP/gRPC export, `OTEL_SERVICE_NAME` names the service, `OTEL_TRACES_SAMPLER`
picks the sampler, `OTEL_SDK_DISABLED=true` turns tracing off. Without an
endpoint, spans are still created so that trace ids reach callers and
propagate, but nothing is exported.

W3C trace context travels in gRPC metadata through
opentelemetry-instrumentation-grpc's interceptors on every server and
channel, so a caller's own trace continues through Warmpath.

Prompt and completion text are never recorded unless the operator opts in
(`WARMPATH_TRACE_CONTENT=true`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import any_of, method_name, negate, service_name
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util.types import AttributeValue

from warmpath_common.generation import GenerationRequest

logger = logging.getLogger(__name__)

# GenAI semantic convention attribute names (OpenTelemetry gen_ai.* registry).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"

# Long-lived or high-frequency RPCs whose spans would only be noise: health
# probes and the agents' never-ending state streams.
_UNTRACED = negate(any_of(service_name("grpc.health.v1.Health"), method_name("WatchState")))


@dataclass(frozen=True, slots=True)
class TraceContentPolicy:
    """Whether prompt and completion text may be recorded in spans. Off by default."""

    record_content: bool = False


PROMPTS_NOT_RECORDED = TraceContentPolicy(record_content=False)


def setup_tracing(default_service_name: str, environ: Mapping[str, str]) -> TracerProvider | None:
    """Installs the global tracer provider from the OTEL_* environment."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": default_service_name}))
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        # Batched in a background thread with a bounded queue: a slow or dead
        # collector drops spans, it never blocks a request.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        logger.info("exporting traces over OTLP/gRPC")
    trace.set_tracer_provider(provider)
    return provider


def server_interceptors() -> list[Any]:
    """The tracing interceptor for a grpc.aio server (goes before the error mapper)."""
    return [aio_server_interceptor(filter_=_UNTRACED)]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """Tracing interceptors for a grpc.aio channel: they inject W3C trace context."""
    return list(aio_client_interceptors(filter_=_UNTRACED))  # type: ignore[no-untyped-call]


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or "" when no span is recording."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def shutdown_tracing(provider: TracerProvider | None) -> None:
    if provider is not None:
        provider.shutdown()


def string_list(values: Sequence[object]) -> list[str]:
    return [str(value) for value in values]


def request_attributes(request: GenerationRequest, model: str) -> dict[str, AttributeValue]:
    """The GenAI request attributes for a span: what was asked, never the prompt text."""
    attributes: dict[str, AttributeValue] = {
        GEN_AI_OPERATION_NAME: "chat" if request.is_chat else "text_completion",
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
