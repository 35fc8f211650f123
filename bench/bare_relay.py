"""The floor for a relaying hop: Router.Generate forwarded to the backend-adapter by a
bare grpc.aio server (on uvloop, like the router) that does nothing else.

    python bench/bare_relay.py --listen 127.0.0.1:50071 --adapter 127.0.0.1:50053 \\
        --base-url http://127.0.0.1:8000 --model mock

No routing, no spans, no error mapping: what any Python gRPC relay in front of
the adapter pays, against which the router's own cost is read.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2_grpc

from warmpath.v1 import (
    backend_adapter_pb2,
    backend_adapter_pb2_grpc,
    generate_pb2,
    gpu_agent_pb2,
    router_pb2_grpc,
)


class BareRelay(router_pb2_grpc.RouterServicer):
    def __init__(
        self, adapter: backend_adapter_pb2_grpc.BackendAdapterStub, base_url: str, model: str
    ) -> None:
        self._adapter = adapter
        self._endpoint = gpu_agent_pb2.BackendEndpoint(
            kind=generate_pb2.BACKEND_KIND_VLLM, base_url=base_url, served_model_id=model
        )

    async def Generate(self, request: Any, context: Any) -> AsyncIterator[Any]:
        call = self._adapter.Generate(
            backend_adapter_pb2.BackendGenerateRequest(request=request, endpoint=self._endpoint),
            timeout=30,
        )
        async for message in call:
            yield message


async def serve(listen: str, adapter: str, base_url: str, model: str) -> None:
    async with grpc.aio.insecure_channel(adapter) as channel:
        server = grpc.aio.server()
        stub = backend_adapter_pb2_grpc.BackendAdapterStub(channel)
        router_pb2_grpc.add_RouterServicer_to_server(BareRelay(stub, base_url, model), server)
        # Health only so the harness can wait for it.
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_insecure_port(listen)
        await server.start()
        await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.listen, args.adapter, args.base_url, args.model))


if __name__ == "__main__":
    main()
