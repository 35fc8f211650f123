"""The attributes the router puts on its spans: where a request was placed and why,
and what answered it (OpenTelemetry GenAI names where they exist)."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)
from opentelemetry.util.types import AttributeValue

from warmpath_common import telemetry
from warmpath_common.generation import Completion
from warmpath_router.decision import RouteTaken
from warmpath_router.registry import ResolvedModel
from warmpath_router.routing import Placement, RouteReason

__all__ = ["placement_attributes", "response_attributes"]


def placement_attributes(
    resolved: ResolvedModel, placement: Placement
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "warmpath.model": placement.model,
        "warmpath.resolution": resolved.resolution.value,
        "warmpath.host": placement.host,
        "warmpath.route.reason": placement.reason.value,
        "warmpath.route.explanation": placement.explanation,
        "warmpath.load_required": placement.load_required,
    }
    if placement.reason is not RouteReason.RESIDENT:
        # Worth its cost only when the choice was not simply "already resident".
        attributes["warmpath.route.candidates"] = [
            f"{c.host} score={c.score:g}"
            + (f" ({c.rejected_because})" if c.rejected_because else "")
            for c in placement.candidates
        ]
    if resolved.alias:
        attributes["warmpath.alias"] = resolved.alias
    if resolved.auto_class:
        attributes["warmpath.auto.class"] = resolved.auto_class
        attributes["warmpath.auto.confidence"] = resolved.auto_confidence
    if placement.replica is not None:
        attributes["warmpath.gpu.index"] = placement.replica.gpu_index
        attributes["warmpath.gpu.uuid"] = placement.replica.gpu_uuid
        if placement.replica.placement is not None:
            attributes.update(telemetry.placement_attributes(placement.replica.placement))
    return attributes


def response_attributes(completion: Completion, route: RouteTaken) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        GEN_AI_RESPONSE_MODEL: route.served_model,
        GEN_AI_RESPONSE_FINISH_REASONS: [completion.finish_reason.value],
        GEN_AI_USAGE_INPUT_TOKENS: completion.usage.input_tokens,
        GEN_AI_USAGE_OUTPUT_TOKENS: completion.usage.output_tokens,
        "warmpath.host": route.host,
        "warmpath.gpu.uuid": route.gpu_uuid,
        "warmpath.cold_start": route.cold_start,
        "warmpath.woken": route.woken,
        "warmpath.fallback_hops": len(route.fallback_hops),
    }
    if route.placement is not None:
        # Known for certain only now: a cold load is placed by the agent.
        attributes.update(telemetry.placement_attributes(route.placement))
    return attributes
