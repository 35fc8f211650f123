"""The baseline for the Route benchmark: the Router service whose Route does nothing.

    python bench/noop_server.py --listen 127.0.0.1:50061            # bare grpc.aio server
    python bench/noop_server.py --listen 127.0.0.1:50061 --plumbed  # Warmpath's create_server

Bare: `grpc.aio.server()` with no interceptors, the floor any grpc.aio service
pays. Plumbed: the same no-op handler behind Warmpath's server plumbing
(tracing and error-mapping interceptors, health, reflection), which splits
the router's cost into "plumbing" and "its own work".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from warmpath.v1 import router_pb2, router_pb2_grpc
from warmpath_common.grpc_server import create_server, serve_until_signalled
from warmpath_common.telemetry import setup_tracing, shutdown_tracing

_EMPTY = router_pb2.RouteDecision()


class NoOpRouter(router_pb2_grpc.RouterServicer):
    async def Route(self, request: Any, context: Any) -> router_pb2.RouteDecision:
        return _EMPTY


async def serve_bare(listen: str) -> None:
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(NoOpRouter(), server)
    # Health only so the harness can wait for it; it costs a Route call nothing.
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1.0)


async def serve_plumbed(listen: str) -> None:
    server = await create_server(
        listen,
        lambda s: router_pb2_grpc.add_RouterServicer_to_server(NoOpRouter(), s),
        [router_pb2.DESCRIPTOR.services_by_name["Router"].full_name],
    )
    await serve_until_signalled(server, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--plumbed", action="store_true")
    args = parser.parse_args()
    if not args.plumbed:
        asyncio.run(serve_bare(args.listen))
        return
    provider = setup_tracing("bench-noop", os.environ)
    try:
        asyncio.run(serve_plumbed(args.listen))
    finally:
        shutdown_tracing(provider)


if __name__ == "__main__":
    main()
