"""Router gRPC servicer: protobuf <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator

from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc
from warmpath_common.convert import (
    BACKEND_TO_PROTO,
    PlacementInfo,
    event_to_proto,
    placement_to_proto,
    request_from_proto,
)
from warmpath_common.security import caller_of
from warmpath_common.servicer_context import ServicerContext
from warmpath_router.cluster import ClusterView
from warmpath_router.decision import Decision, FallbackHop, RoutedCompletion, RouteTaken
from warmpath_router.registry import Resolution
from warmpath_router.relay import Relay
from warmpath_router.routing import RouteReason

__all__ = ["RouterServicer"]

_RESOLUTION = {
    Resolution.EXACT: generate_pb2.RESOLUTION_EXACT,
    Resolution.ALIAS: generate_pb2.RESOLUTION_ALIAS,
    Resolution.AUTO: generate_pb2.RESOLUTION_AUTO,
}
_REASON = {
    RouteReason.RESIDENT: router_pb2.ROUTE_REASON_RESIDENT,
    RouteReason.LOADING: router_pb2.ROUTE_REASON_LOADING,
    RouteReason.LOAD_REQUIRED: router_pb2.ROUTE_REASON_LOAD_REQUIRED,
}


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, relay: Relay, cluster: ClusterView) -> None:
        self._relay = relay
        self._cluster = cluster

    async def Route(
        self, request: router_pb2.RouteRequest, context: ServicerContext
    ) -> router_pb2.RouteDecision:
        caller = caller_of(context)
        return _decision_to_proto(self._relay.decide(request_from_proto(request.request), caller))

    async def Generate(
        self, request: generate_pb2.GenerateRequest, context: ServicerContext
    ) -> AsyncIterator[generate_pb2.GenerateResponse]:
        async for event in self._relay.generate(
            request_from_proto(request), context.time_remaining(), caller_of(context)
        ):
            if isinstance(event, RoutedCompletion):
                final = event_to_proto(event.completion)
                final.route.CopyFrom(_route_to_proto(event.route))
                yield final
            else:
                yield event_to_proto(event)

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: ServicerContext
    ) -> router_pb2.ListModelsResponse:
        return router_pb2.ListModelsResponse(
            models=[
                router_pb2.ModelInfo(
                    name=spec.name,
                    aliases=list(spec.aliases),
                    backend=BACKEND_TO_PROTO[spec.backend],
                    context_length=spec.context_length,
                    memory_bytes=int(spec.memory or 0),
                    tags=list(spec.tags),
                    fallbacks=list(spec.fallbacks),
                    replicas=[
                        router_pb2.ModelReplica(
                            host=replica.host,
                            gpu_index=replica.gpu_index,
                            state=replica.state.value,
                            placement=_placement(replica.placement),
                        )
                        for replica in self._cluster.replicas_of(spec.name)
                    ],
                )
                for spec in self._relay.registry.specs
            ]
        )


def _hops_to_proto(hops: tuple[FallbackHop, ...]) -> list[generate_pb2.FallbackHop]:
    return [
        generate_pb2.FallbackHop(from_model=h.from_model, to_model=h.to_model, reason=h.reason)
        for h in hops
    ]


def _route_to_proto(route: RouteTaken) -> generate_pb2.RouteTaken:
    return generate_pb2.RouteTaken(
        requested_model=route.requested_model,
        served_model=route.served_model,
        resolved_from_alias=route.alias,
        resolution=_RESOLUTION[route.resolution],
        host=route.host,
        gpu_index=route.gpu_index,
        gpu_uuid=route.gpu_uuid,
        backend=BACKEND_TO_PROTO[route.backend],
        cold_start=route.cold_start,
        load_seconds=route.load_seconds,
        fallback_hops=_hops_to_proto(route.fallback_hops),
        auto_class=route.auto_class,
        auto_confidence=route.auto_confidence,
        trace_id=route.trace_id,
        placement=_placement(route.placement),
        woken=route.woken,
        load_description=route.load_description,
    )


def _placement(info: PlacementInfo | None) -> generate_pb2.Placement | None:
    return None if info is None else placement_to_proto(info)


def _decision_to_proto(decision: Decision) -> router_pb2.RouteDecision:
    placement = decision.placement
    resolved = decision.resolved
    replica = placement.replica
    return router_pb2.RouteDecision(
        model=placement.model,
        resolved_from_alias=resolved.alias,
        resolution=_RESOLUTION[resolved.resolution],
        host=placement.host,
        gpu_index=replica.gpu_index if replica else -1,
        gpu_uuid=decision.gpu_uuid,
        placement=_placement(replica.placement if replica else None),
        backend=BACKEND_TO_PROTO[decision.backend],
        reason=_REASON[placement.reason],
        explanation=f"{resolved.explanation}; {placement.explanation}",
        load_required=placement.load_required,
        expected_load_seconds=placement.expected_load_seconds,
        wake_required=placement.wake_required,
        candidates=[
            router_pb2.RouteCandidate(
                model=c.model,
                host=c.host,
                gpu_index=c.gpu_index,
                resident=c.resident,
                score=c.score,
                rejected_because=c.rejected_because,
                placement=_placement(c.placement),
            )
            for c in placement.candidates
        ],
        fallback_chain=list(decision.fallback_chain),
        auto_class=resolved.auto_class,
        auto_confidence=resolved.auto_confidence,
        trace_id=decision.trace_id,
    )
