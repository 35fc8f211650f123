"""The gRPC server every service runs: created with health and reflection, each handler
wrapped in the call plumbing (warmpath_common.call_plumbing), stopped gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from warmpath_common.call_plumbing import CallGuard, Drain, Registrar
from warmpath_common.config import TlsSettings
from warmpath_common.liveness import server_keepalive_options
from warmpath_common.metrics import HealthProbeCounter
from warmpath_common.security import server_credentials

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ServiceServer",
    "create_server",
    "serve_until_signalled",
]

logger = logging.getLogger(__name__)

# Large enough for long chat histories; the router still enforces its own,
# clearer, limits on prompt size.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass
class ServiceServer:
    """A started gRPC server with its health servicer."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: tuple[str, ...]
    drain: Drain
    stopping: bool = False
    parts: set[str] = field(default_factory=set)
    """Health names of parts of the service (one per GPU on an agent)."""

    async def set_serving(self, serving: bool) -> None:
        if serving and self.stopping:
            return  # once shutting down, never SERVING again
        for name in ("", *self.service_names):
            await self.health.set(name, _health_status(serving))

    async def set_part_serving(self, name: str, serving: bool) -> None:
        """The health of one part of the service, under its own name, for probes that
        ask about it; NOT_SERVING once shutting down, as the whole."""
        self.parts.add(name)
        await self.health.set(name, _health_status(serving and not self.stopping))

    async def stop(self, grace_seconds: float) -> None:
        """Flip health to NOT_SERVING, refuse new calls with UNAVAILABLE, let the calls in
        flight finish within `grace_seconds`, then stop (ending long-lived streams)."""
        self.stopping = True
        await self.set_serving(False)
        for part in self.parts:
            await self.health.set(part, _health_status(False))
        self.drain.draining = True
        if not await self.drain.wait_idle(grace_seconds):
            logger.warning(
                "calls still in flight after %.1f s of grace; cancelling them", grace_seconds
            )
        await self.server.stop(0)


def _health_status(serving: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    return (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )


async def create_server(
    listen: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    metrics: CollectorRegistry | None = None,
    *,
    serving: bool = True,
    tls: TlsSettings | None = None,
    section: str = "",
    guards: Sequence[CallGuard] = (),
) -> ServiceServer:
    """Builds and starts a server with error mapping, health and reflection.

    `listen` is "host:port"; port 0 picks a free port (see `ServiceServer.port`).
    """
    names = tuple(service_names)
    drain = Drain()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Accept the router's keepalive pings (warmpath_common.liveness).
            *server_keepalive_options(),
        ],
    )
    registrar = Registrar(
        server, drain, guards, HealthProbeCounter(metrics) if metrics is not None else None
    )
    register(registrar)  # forwards to the server what registration uses
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME),
        registrar,
    )
    try:
        port = (
            server.add_secure_port(listen, server_credentials(tls, section))
            if tls is not None
            else server.add_insecure_port(listen)
        )
    except RuntimeError:  # grpcio's way of saying the bind failed
        port = 0
    if port == 0:
        raise OSError(
            f"cannot listen on {listen} ({section}.listen): the address is in use or invalid; "
            "choose a free host:port"
        )
    await server.start()
    started = ServiceServer(server, health_servicer, port, names, drain)
    await started.set_serving(serving)
    logger.info("serving %s on %s (port %d)", ", ".join(names), listen, port)
    return started


async def serve_until_signalled(
    server: ServiceServer,
    grace_seconds: float,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    waiter = asyncio.ensure_future(server.server.wait_for_termination())
    signalled = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, signalled}, return_when=asyncio.FIRST_COMPLETED)
    logger.info("shutting down (grace %.1f s)", grace_seconds)
    await server.stop(grace_seconds)
    if on_stop is not None:
        await on_stop()
    for task in (waiter, signalled):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
