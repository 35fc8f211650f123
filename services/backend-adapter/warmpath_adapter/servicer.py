"""BackendAdapter gRPC servicer: protobuf <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator

from warmpath.v1 import backend_adapter_pb2, backend_adapter_pb2_grpc, generate_pb2
from warmpath_adapter.backends import BackendDispatcher
from warmpath_common.convert import endpoint_from_proto, event_to_proto, request_from_proto
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
        target = endpoint_from_proto(request.endpoint)
        async for event in self._dispatcher.stream(request_from_proto(request.request), target):
            yield event_to_proto(event)
