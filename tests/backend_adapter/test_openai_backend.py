"""The SSE parser against httpx's MockTransport (the real server is in tests/integration)."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client import CollectorRegistry

from warmpath_adapter.backends import BackendDispatcher
from warmpath_adapter.metrics import AdapterMetrics
from warmpath_adapter.openai_backend import OpenAICompatibleBackend
from warmpath_cli.mesh import free_port
from warmpath_common.config import BackendKindName
from warmpath_common.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
)
from warmpath_common.generation import (
    ChatTurn,
    Completion,
    Endpoint,
    FinishReason,
    GenerationRequest,
    TextDelta,
)

TARGET = Endpoint(BackendKindName.VLLM, "http://backend", "served-id")
CHAT = GenerationRequest(model="m", messages=(ChatTurn("user", "hi"),), max_tokens=5)


def sse(*chunks: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(c) if not isinstance(c, str) else c}\n\n" for c in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def delta(text: str | None = None, finish: str | None = None) -> dict[str, object]:
    body = {} if text is None else {"content": text}
    return {"choices": [{"index": 0, "delta": body, "finish_reason": finish}]}


def backend(handler: httpx.MockTransport) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(httpx.AsyncClient(transport=handler), idle_timeout_seconds=5)


async def run(handler: httpx.MockTransport, request: GenerationRequest = CHAT) -> list[object]:
    return [event async for event in backend(handler).stream(request, TARGET)]


def responder(
    body: bytes, status: int = 200, seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handle)


async def test_deltas_then_completion_with_reported_usage() -> None:
    seen: list[httpx.Request] = []
    usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    events = await run(
        responder(sse(delta("He"), delta("llo"), delta(finish="length"), usage), seen=seen)
    )
    assert events == [
        TextDelta("He"),
        TextDelta("llo"),
        Completion(FinishReason.LENGTH, usage=events[-1].usage),  # type: ignore[attr-defined]
    ]
    assert events[-1].usage.input_tokens == 4  # type: ignore[attr-defined]
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/chat/completions"
    assert body["model"] == "served-id" and body["max_tokens"] == 5 and body["stream"] is True


async def test_stream_cut_before_finish_is_unavailable_not_success() -> None:
    with pytest.raises(Unavailable, match="without a finish reason"):
        await run(responder(sse(delta("He"), done=False)))


async def test_malformed_chunk_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="malformed"):
        await run(responder(sse(delta("He"), "{not json")))


@pytest.mark.parametrize(
    ("status", "error", "not_sent"),
    [
        # The server refused without taking the request on (RFC 9110, RFC 6585).
        (429, ResourceExhausted, True),
        (503, Unavailable, True),
        (400, InvalidRequest, False),
        (404, Unavailable, False),
        (500, Unavailable, False),
        (502, Unavailable, False),
    ],
)
async def test_http_errors_map_to_statuses(
    status: int, error: type[WarmpathError], not_sent: bool
) -> None:
    with pytest.raises(error) as caught:
        await run(responder(b'{"error": "echo of the prompt"}', status=status))
    assert caught.value.not_sent is not_sent


async def test_http_error_message_does_not_quote_the_body() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await run(responder(b'{"error": "SECRET-PROMPT"}', status=400))
    assert "SECRET-PROMPT" not in str(caught.value)


async def test_stall_is_deadline_exceeded() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no data", request=request)

    with pytest.raises(DeadlineExceeded, match="stalled"):
        await run(httpx.MockTransport(stall))


async def test_unreachable_backend_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(Unavailable, match="cannot connect") as caught:
        await run(httpx.MockTransport(refuse))
    assert caught.value.not_sent


async def test_a_refused_connection_is_marked_not_sent() -> None:
    # A real socket with nothing listening: what httpx raises for it is what counts.
    target = Endpoint(BackendKindName.VLLM, f"http://127.0.0.1:{free_port()}", "m")
    async with httpx.AsyncClient() as client:
        events = OpenAICompatibleBackend(client, idle_timeout_seconds=5).stream(CHAT, target)
        with pytest.raises(Unavailable, match="cannot connect") as caught:
            _ = [event async for event in events]
    assert caught.value.not_sent and caught.value.backend_down


@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout("slow handshake"), httpx.PoolTimeout("pool full")]
)
async def test_no_connection_in_time_is_marked_not_sent(failure: httpx.TransportError) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(Unavailable) as caught:
        await run(httpx.MockTransport(fail))
    assert caught.value.not_sent


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("broken pipe"),
    ],
)
async def test_a_failure_after_the_request_was_written_is_not_marked(
    failure: httpx.TransportError,
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(Unavailable) as caught:
        await run(httpx.MockTransport(fail))
    assert not caught.value.not_sent, "the server may have started generating"


async def test_a_cut_stream_is_not_marked_not_sent() -> None:
    with pytest.raises(Unavailable) as caught:
        await run(responder(sse(delta("He"), done=False)))
    assert not caught.value.not_sent


async def test_dispatcher_rejects_bad_urls_and_unknown_kinds() -> None:
    dispatcher = BackendDispatcher({}, AdapterMetrics(CollectorRegistry()))
    with pytest.raises(InvalidRequest, match="http"):
        dispatcher.stream(CHAT, Endpoint(BackendKindName.VLLM, "file:///etc", "x"))
    with pytest.raises(InvalidRequest, match="not supported"):
        dispatcher.stream(CHAT, TARGET)


async def test_the_dispatcher_counts_an_unexpected_failure_as_internal_not_ok() -> None:
    class Broken:
        async def stream(self, request: object, target: object):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug, not a backend answer")
            yield  # an async generator, like every backend

    registry = CollectorRegistry()
    dispatcher = BackendDispatcher({BackendKindName.VLLM: Broken()}, AdapterMetrics(registry))  # type: ignore[dict-item]
    with pytest.raises(RuntimeError):
        async for _ in dispatcher.stream(CHAT, TARGET):
            pass
    labels = {"backend": "vllm", "outcome": "INTERNAL"}
    assert registry.get_sample_value("warmpath_adapter_requests_total", labels) == 1
