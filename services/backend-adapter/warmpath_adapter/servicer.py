"""BackendAdapter gRPC servicer: protobuf <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator

from warmpath.v1 import backend_adapter_pb2, backend_adapter_pb2_grpc, generate_pb2
from warmpath_adapter.backends import BackendDispatcher, BackendTarget
from warmpath_common.convert import BACKEND_FROM_PROTO, event_to_proto, request_from_proto
from warmpath_common.errors import InvalidRequest
from warmpath_common.servicer_context import ServicerContext

__all__ = ["BackendAdapterServicer"]


class BackendAdapterServicer(backend_adapter_pb2_grpc.BackendAdapterServicer):
    def __init__(self, dispatcher: BackendDispatcher) -> None:
        self._dispatcher = dispatcher

    async def Generate(
        self,
        request: backend_adapter_pb2.BackendGenerateRequest,
        context: ServicerContext,
    ) -> AsyncIterator[generate_pb2.GenerateResponse]:
        kind = BACKEND_FROM_PROTO.get(request.endpoint.kind)
        if kind is None:
            raise InvalidRequest("endpoint.kind must name a backend kind")
        target = BackendTarget(kind, request.endpoint.base_url, request.endpoint.served_model_id)
        async for event in self._dispatcher.stream(request_from_proto(request.request), target):
            yield event_to_proto(event)
