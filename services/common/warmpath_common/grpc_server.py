"""Server plumbing every service uses: error mapping, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from warmpath_common.config import TlsSettings
from warmpath_common.errors import WarmpathError
from warmpath_common.metrics import HealthProbeCounter
from warmpath_common.security import server_credentials
from warmpath_common.telemetry import server_interceptors

logger = logging.getLogger(__name__)

# Large enough for long chat histories; the router still enforces its own,
# clearer, limits on prompt size.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# grpc.aio.ServicerContext; grpc ships no type information, so it is Any to mypy.
ServicerContext: TypeAlias = Any


async def _abort_for(error: BaseException, context: ServicerContext) -> None:
    if isinstance(error, WarmpathError):
        await context.abort(error.status_code, error.message)
    logger.exception("unhandled error in RPC", exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


# Calls that stay open for as long as the caller wants: they do not hold up a drain.
_LONG_LIVED = frozenset({"/grpc.health.v1.Health/Watch", "/warmpath.v1.GpuAgent/WatchState"})


class Drain:
    """Counts calls in flight, and refuses new ones once the server is draining.

    gRPC itself refuses calls during server.stop() with CANCELLED, which tells a
    client nothing useful; a draining server answers UNAVAILABLE instead, so
    clients retry on another replica, and its health reports NOT_SERVING first.
    """

    def __init__(self) -> None:
        self.draining = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self._active += 1
        self._idle.clear()

    def leave(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns WarmpathError into its status, anything unexpected into INTERNAL.

    Never lets a raw exception become UNKNOWN with a traceback in its details.
    Also the drain point: see `Drain`.
    """

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        # A method's handler never changes, so it is wrapped once: wrapping on every
        # call cost a fifth of a no-op server's throughput (bench/results/findings.md).
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if self._drain.draining and not method.startswith("/grpc.health.v1.Health/"):
            return _refusing(method)
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        drain = None if method in _LONG_LIVED else self._drain
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, drain),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # Streaming handlers are either async generators or coroutines that
            # send with context.write (the health servicer's Watch): wrap each
            # as what it is, or gRPC would treat them differently.
            behaviour = handler.unary_stream
            wrap = _wrap_stream if inspect.isasyncgenfunction(behaviour) else _wrap_unary
            return grpc.unary_stream_rpc_method_handler(
                wrap(behaviour, drain),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


@dataclass(frozen=True)
class _Undecodable:
    reason: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A request that does not parse (e.g. a string field that is not UTF-8) becomes a
    value the handler turns into INVALID_ARGUMENT; gRPC itself would answer UNKNOWN."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as error:
            return _Undecodable(str(error))

    return parse


async def _refuse_undecodable(request: Any, context: ServicerContext) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request could not be parsed ({request.reason}); string fields must be UTF-8",
        )


def _refusing(method: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, "this server is shutting down; retry on another replica"
        )

    # Every Warmpath RPC takes one message, so a unary handler answers any of them.
    return grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=lambda data: data)


def _wrap_unary(behaviour: Callable[..., Any], drain: Drain | None) -> Callable[..., Any]:
    async def wrapped(request: Any, context: ServicerContext) -> Any:
        await _refuse_undecodable(request, context)
        if drain is not None:
            drain.enter()
        try:
            return await behaviour(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as error:
            await _abort_for(error, context)
        finally:
            if drain is not None:
                drain.leave()

    return wrapped


def _wrap_stream(behaviour: Callable[..., Any], drain: Drain | None) -> Callable[..., Any]:
    async def wrapped(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        await _refuse_undecodable(request, context)
        if drain is not None:
            drain.enter()
        try:
            async for response in behaviour(request, context):
                yield response
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as error:
            await _abort_for(error, context)
        finally:
            if drain is not None:
                drain.leave()

    return wrapped


@dataclass
class ServiceServer:
    """A started gRPC server with its health servicer."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: tuple[str, ...]
    drain: Drain
    stopping: bool = False

    async def set_serving(self, serving: bool) -> None:
        if serving and self.stopping:
            return  # once shutting down, never SERVING again
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace_seconds: float) -> None:
        """Flip health to NOT_SERVING, refuse new calls with UNAVAILABLE, let the calls in
        flight finish within `grace_seconds`, then stop (ending long-lived streams)."""
        self.stopping = True
        await self.set_serving(False)
        self.drain.draining = True
        if not await self.drain.wait_idle(grace_seconds):
            logger.warning(
                "calls still in flight after %.1f s of grace; cancelling them", grace_seconds
            )
        await self.server.stop(0)


async def create_server(
    listen: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    metrics: CollectorRegistry | None = None,
    *,
    serving: bool = True,
    tls: TlsSettings | None = None,
    section: str = "",
    guards: Sequence[grpc.aio.ServerInterceptor] = (),
) -> ServiceServer:
    """Builds and starts a server with error mapping, health and reflection.

    `listen` is "host:port"; port 0 picks a free port (see `ServiceServer.port`).
    """
    names = tuple(service_names)
    drain = Drain()
    server = grpc.aio.server(
        # Tracing outermost, so its span sees the status the error mapper sets.
        interceptors=[
            *server_interceptors(),
            *([HealthProbeCounter(metrics)] if metrics is not None else []),
            ErrorMappingInterceptor(drain),
            # Inside the error mapper, so the errors they raise become statuses.
            *guards,
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = (
        server.add_secure_port(listen, server_credentials(tls, section))
        if tls is not None
        else server.add_insecure_port(listen)
    )
    if port == 0:
        raise OSError(f"cannot listen on {listen}: address in use or invalid")
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
