"""The router's HTTP front door: OpenAI's and Anthropic's APIs on aiohttp, calling the
same relay as the gRPC servicer. Like servicer.py it only translates: HTTP and JSON
to a GenerationRequest, the relay's stream back to the dialect's answer.

Around every request, one visible chain (middleware `_edge`): a SERVER span that
joins an incoming W3C `traceparent`, the caller (token or address), and errors in
the dialect's own shape and status. What is known when the headers go out: a
streamed answer's headers are sent when the first chunk arrives, after placement,
any load, retries and fallbacks, so they carry the whole route; nothing after the
first chunk can change it (the relay neither retries nor falls back then).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from warmpath_common.config import HttpSettings
from warmpath_common.errors import Unauthenticated, Unavailable, WarmpathError
from warmpath_common.generation import TextDelta
from warmpath_common.security import BearerTokenGuard, Caller
from warmpath_common.telemetry import activated, current_trace_id
from warmpath_router.decision import RoutedCompletion, RouteTaken
from warmpath_router.http_api.anthropic_dialect import (
    VERSION_HEADER,
    AnthropicDialect,
    check_version,
    parse_messages,
)
from warmpath_router.http_api.openai_dialect import OpenAiDialect, parse_chat, parse_completion
from warmpath_router.http_api.translation import (
    BadField,
    Call,
    Dialect,
    Problem,
    ProblemKind,
    StreamRenderer,
    problem_of,
    route_headers,
    timeout_from,
)
from warmpath_router.relay import Relay

__all__ = ["Handler", "HttpFrontDoor"]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("warmpath.http")

OPENAI = OpenAiDialect()
ANTHROPIC = AnthropicDialect()
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_KIND_BY_STATUS = {
    401: ProblemKind.AUTHENTICATION,
    403: ProblemKind.PERMISSION,
    404: ProblemKind.NOT_FOUND,
    413: ProblemKind.TOO_LARGE,
    429: ProblemKind.RATE_LIMIT,
}
_TRACE_HEADERS = ("traceparent", "tracestate")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpFrontDoor:
    """The HTTP listener; `start()` it, `stop()` it on shutdown."""

    def __init__(
        self,
        relay: Relay,
        settings: HttpSettings,
        guard: BearerTokenGuard | None,
        ssl_context: ssl.SSLContext | None,
        shutdown_grace_seconds: float,
    ) -> None:
        self._relay = relay
        self._settings = settings
        self._guard = guard
        self._ssl = ssl_context
        app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[self._edge])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        # A client that goes away cancels its handler, and so the relay's call to the
        # model server: the server stops generating for nobody.
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=shutdown_grace_seconds,
        )
        self.port = 0

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), ssl_context=self._ssl)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise OSError(
                f"cannot serve the HTTP API on {listen} (router.http.listen): "
                f"{error.strerror or error}; choose a free port or leave the field empty"
            ) from error
        self.port = int(self._runner.addresses[0][1])
        logger.info(
            "serving the OpenAI and Anthropic HTTP APIs on %s (port %d, %s)",
            listen,
            self.port,
            "TLS" if self._ssl else "plain HTTP",
        )
        return self.port

    async def stop(self) -> None:
        """Stops listening, lets requests in flight finish within the grace, then closes."""
        await self._runner.cleanup()

    # --- the chain around every request ---------------------------------------------

    @web.middleware
    async def _edge(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        dialect = _dialect_of(request)
        span = _start_span(request)
        status = 499
        try:
            with activated(span):
                try:
                    response = await handler(request)
                except WarmpathError as error:
                    response = self._error(dialect, problem_of(error))
                except web.HTTPException as error:
                    response = self._error(dialect, _problem_of_http(error))
                except Exception:
                    logger.exception("unhandled error in %s %s", request.method, request.path)
                    response = self._error(
                        dialect, Problem(500, ProblemKind.INTERNAL, "internal error")
                    )
            status = response.status
            return response
        finally:
            _end_span(span, status)

    def _error(self, dialect: Dialect, problem: Problem) -> web.Response:
        models = [spec.name for spec in self._relay.registry.specs]
        headers = {"x-warmpath-trace-id": current_trace_id()}
        if problem.retry_after:
            headers["Retry-After"] = str(self._settings.retry_after_seconds)
        return web.json_response(
            dialect.error_body(problem, models), status=problem.status, headers=headers
        )

    def _caller(self, request: web.Request) -> Caller:
        """The token's owner when the router requires tokens, else the caller's address
        (as on gRPC, so one caller's limit counts both)."""
        if self._guard is None:
            return Caller(request.remote or "anonymous")
        header = request.headers.get("Authorization", "")
        if not header and request.headers.get("x-api-key"):
            header = "Bearer " + request.headers["x-api-key"]
        if not header:
            raise Unauthenticated(
                "this router requires a token: send 'Authorization: Bearer <token>' "
                "(OpenAI clients) or 'x-api-key: <token>' (Anthropic clients)"
            )
        return self._guard.authenticate(header)

    # --- endpoints ------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        return await self._generate(request, OPENAI, parse_chat(await _json(request)), caller)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        return await self._generate(request, OPENAI, parse_completion(await _json(request)), caller)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        check_version(request.headers)
        return await self._generate(
            request, ANTHROPIC, parse_messages(await _json(request)), caller
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._caller(request)
        names = [
            (name, "warmpath")
            for spec in self._relay.registry.specs
            for name in (spec.name, *spec.aliases)
        ]
        dialect = ANTHROPIC if VERSION_HEADER in request.headers else OPENAI
        return web.json_response(dialect.models_body(names))

    # --- generation -----------------------------------------------------------------

    async def _generate(
        self, request: web.Request, dialect: Dialect, call: Call, caller: Caller
    ) -> web.StreamResponse:
        routes: list[RouteTaken] = []
        events = self._relay.generate(
            call.request, timeout_from(request.headers), caller, on_route=routes.append
        )
        # An async generator: closed here, so a client gone mid-stream ends its relay call.
        async with contextlib.aclosing(cast(AsyncGenerator[TextDelta | RoutedCompletion], events)):
            if not call.stream:
                return await _collected(events, call)
            # Until the first chunk, a failure is an ordinary error answer.
            first = await anext(events, None)
            if first is None or not routes:
                raise Unavailable("the model server ended the stream without an answer")
            response = _SseResponse(headers={**route_headers(routes[0]), **_SSE_HEADERS})
            await response.prepare(request)
            renderer = call.renderer(routes[0])
            await _stream(response, renderer, dialect, first, events)
            return response


async def _collected(
    events: AsyncIterator[TextDelta | RoutedCompletion], call: Call
) -> web.Response:
    texts: list[str] = []
    async for event in events:
        if isinstance(event, RoutedCompletion):
            return web.json_response(
                call.response_body("".join(texts), event), headers=route_headers(event.route)
            )
        texts.append(event.text)
    raise Unavailable("the model server ended the stream without finishing")


class _SseResponse(web.StreamResponse):
    """A streamed answer whose headers leave in the same write as its first chunk: it is
    prepared only once that chunk is there, so sending the headers alone first would
    cost a second send on the first token's path. (aiohttp's own Response buffers them
    so; StreamResponse sends them at once unless told otherwise.)"""

    _send_headers_immediately = False


async def _stream(
    response: web.StreamResponse,
    renderer: StreamRenderer,
    dialect: Dialect,
    first: TextDelta | RoutedCompletion,
    events: AsyncIterator[TextDelta | RoutedCompletion],
) -> None:
    """Writes the stream; once its first byte is out, a failure ends it with the
    dialect's error event (never silently, never a second status). The last event goes
    out with the end of the body, in one write."""
    last = b""
    try:
        if isinstance(first, RoutedCompletion):
            last = renderer.opening() + renderer.closing(first.completion)
        else:
            await response.write(renderer.opening() + renderer.delta(first.text))
            # Read to the relay's end (not `break`), so that it counts the answer as done.
            async for event in events:
                if isinstance(event, RoutedCompletion):
                    last = renderer.closing(event.completion)
                else:
                    await response.write(renderer.delta(event.text))
    except WarmpathError as error:
        last = dialect.stream_error(problem_of(error))
    except ConnectionError:
        return  # the client is gone: nobody to tell
    except Exception:
        logger.exception("unhandled error while streaming")
        last = dialect.stream_error(Problem(500, ProblemKind.INTERNAL, "internal error"))
    with contextlib.suppress(ConnectionError):
        await response.write_eof(last)


async def _json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Type must be application/json, not {request.content_type}"
        )
    raw = await request.read()  # past client_max_size: 413
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadField("body", f"not valid JSON ({error})") from error


def _dialect_of(request: web.Request) -> Dialect:
    if request.path.startswith("/v1/messages") or VERSION_HEADER in request.headers:
        return ANTHROPIC
    return OPENAI


def _problem_of_http(error: web.HTTPException) -> Problem:
    kind = _KIND_BY_STATUS.get(
        error.status, ProblemKind.INTERNAL if error.status >= 500 else ProblemKind.INVALID_REQUEST
    )
    message = error.text if error.text and error.text != f"{error.status}: {error.reason}" else ""
    return Problem(error.status, kind, message or error.reason)


def _start_span(request: web.Request) -> Span | None:
    """A SERVER span per request, in the caller's trace when it sends `traceparent`;
    listing models joins a caller's trace but never starts one (as ListModels)."""
    carrier = {name: request.headers[name] for name in _TRACE_HEADERS if name in request.headers}
    if not carrier and request.method == "GET":
        return None
    route = request.match_info.route.resource
    path = route.canonical if route is not None else request.path
    return _tracer.start_span(
        f"{request.method} {path}",
        context=propagate.extract(carrier) if carrier else None,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "url.path": request.path},
    )


def _end_span(span: Span | None, status: int) -> None:
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, str(status)))
    span.end()
