"""Server plumbing every service uses: error mapping, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from warmpath_common.config import TlsSettings
from warmpath_common.errors import (
    BACKEND_DOWN_METADATA_KEY,
    NOT_SENT_METADATA_KEY,
    PEER_ANSWERED_METADATA_KEY,
    Unavailable,
    WarmpathError,
    status_of,
)
from warmpath_common.liveness import server_keepalive_options
from warmpath_common.metrics import HealthProbeCounter
from warmpath_common.security import server_credentials
from warmpath_common.servicer_context import ServicerContext
from warmpath_common.telemetry import activated, end_rpc_span, start_server_span, traced_method

logger = logging.getLogger(__name__)

# Large enough for long chat histories; the router still enforces its own,
# clearer, limits on prompt size.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def _trailing_metadata_for(error: WarmpathError) -> tuple[tuple[str, str], ...]:
    """What an error's status carries besides code and message: the not-sent,
    backend-down and peer-answered marks, which the caller's client reads (see
    warmpath_common.errors)."""
    marks = (
        (NOT_SENT_METADATA_KEY, error.not_sent),
        (BACKEND_DOWN_METADATA_KEY, error.backend_down),
        (PEER_ANSWERED_METADATA_KEY, True),
    )
    return tuple((key, "true") for key, marked in marks if marked)


async def _abort_for(error: BaseException, context: ServicerContext) -> None:
    if isinstance(error, WarmpathError):
        await context.abort(error.status_code, error.message, _trailing_metadata_for(error))
    logger.exception("unhandled error in RPC", exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


# Calls that stay open for as long as the caller wants: they do not hold up a drain.
_LONG_LIVED = frozenset({"/grpc.health.v1.Health/Watch", "/warmpath.v1.GpuAgent/WatchState"})
_HEALTH_PREFIX = "/grpc.health.v1.Health/"


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


class CallGuard(Protocol):
    """A check that runs before a handler, e.g. authentication (see warmpath_common.security).

    WarmpathErrors it raises become statuses like any handler's.
    """

    def applies_to(self, method: str) -> bool: ...

    async def check(self, method: str, context: ServicerContext) -> None: ...


@dataclass(frozen=True, slots=True)
class _MethodPlumbing:
    """Everything Warmpath does around one method's handler, decided once per method."""

    method: str
    drain: Drain
    counted: bool
    """Counted by the drain (long-lived streams are not: they would hold it up forever)."""
    refusable: bool
    """Refused while draining (health is not: it must report NOT_SERVING)."""
    traced: bool
    guards: tuple[CallGuard, ...]
    probes: HealthProbeCounter | None

    @contextlib.asynccontextmanager
    async def serving(self, request: Any, context: ServicerContext) -> AsyncIterator[None]:
        """Around one call: admitted, counted by the drain, inside its span, and any
        error turned into its status."""
        span = (
            start_server_span(self.method, context.invocation_metadata()) if self.traced else None
        )
        code = grpc.StatusCode.OK
        if self.counted:
            self.drain.enter()
        try:
            with activated(span):
                await self.admit(request, context)
                yield
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = _aborted_with(context)
            raise
        except Exception as error:
            code = status_of(error)
            await _abort_for(error, context)
        finally:
            if self.counted:
                self.drain.leave()
            end_rpc_span(span, code)

    async def admit(self, request: Any, context: ServicerContext) -> None:
        if self.refusable and self.drain.draining:
            # Refused before any handler ran: nothing was sent on, so it is marked not-sent.
            await _abort_for(
                Unavailable(
                    "this server is shutting down; retry on another replica", not_sent=True
                ),
                context,
            )
        await _refuse_undecodable(request, context)
        if self.probes is not None:
            self.probes.count(self.method)
        for guard in self.guards:
            await guard.check(self.method, context)


class _Registrar:
    """Stands in for the grpc.aio.Server while services register, and wraps every handler
    once with Warmpath's plumbing: drain, error mapping, the server span, guards.

    Done at registration rather than in a grpc.aio ServerInterceptor because
    grpc runs an interceptor chain (coroutines, a handler lookup) on every call,
    which cost the no-op RPC a quarter of its throughput (bench/results/findings.md).
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        drain: Drain,
        guards: Sequence[CallGuard],
        probes: HealthProbeCounter | None,
    ) -> None:
        self._server = server
        self._drain = drain
        self._guards = tuple(guards)
        self._probes = probes

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_WrappedGenericHandler(handler, self.wrap) for handler in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service,
            {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()},
        )

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        health_method = method.startswith(_HEALTH_PREFIX)
        plumbing = _MethodPlumbing(
            method=method,
            drain=self._drain,
            counted=method not in _LONG_LIVED,
            refusable=not health_method,
            traced=traced_method(method),
            guards=tuple(g for g in self._guards if g.applies_to(method)),
            probes=self._probes if health_method else None,
        )
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, plumbing),
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
                wrap(behaviour, plumbing),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        # Streaming requests (only reflection's): no Warmpath RPC takes one.
        return handler


class _WrappedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(
        self,
        inner: grpc.GenericRpcHandler,
        wrap: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler],
    ) -> None:
        self._inner = inner
        self._wrap = wrap
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method not in self._wrapped:
            handler = self._inner.service(handler_call_details)
            self._wrapped[method] = None if handler is None else self._wrap(method, handler)
        return self._wrapped[method]


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


def _aborted_with(context: ServicerContext) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _wrap_unary(behaviour: Callable[..., Any], plumbing: _MethodPlumbing) -> Callable[..., Any]:
    async def wrapped(request: Any, context: ServicerContext) -> Any:
        async with plumbing.serving(request, context):
            return await behaviour(request, context)

    return wrapped


def _wrap_stream(behaviour: Callable[..., Any], plumbing: _MethodPlumbing) -> Callable[..., Any]:
    async def wrapped(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        async with plumbing.serving(request, context):
            async for response in behaviour(request, context):
                yield response

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
    registrar = _Registrar(
        server, drain, guards, HealthProbeCounter(metrics) if metrics is not None else None
    )
    register(registrar)  # forwards to the server what registration uses
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME),
        registrar,
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
