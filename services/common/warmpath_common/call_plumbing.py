"""What Warmpath does around every RPC handler, wired in once per method at registration:
the drain that refuses new calls on shutdown, call guards (authentication), the server
span, requests that do not parse, and errors turned into their gRPC status (the one place
that maps them; see warmpath_common.errors)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from warmpath_common.errors import (
    BACKEND_DOWN_METADATA_KEY,
    NOT_SENT_METADATA_KEY,
    PEER_ANSWERED_METADATA_KEY,
    Unavailable,
    WarmpathError,
    status_of,
)
from warmpath_common.metrics import HealthProbeCounter
from warmpath_common.servicer_context import ServicerContext
from warmpath_common.telemetry import activated, end_rpc_span, start_server_span, traced_method

__all__ = ["CallGuard", "Drain", "Registrar"]

logger = logging.getLogger(__name__)


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
        if self._idle.is_set():  # a timeout of 0 would say False regardless
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
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


class Registrar:
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
