"""Ollama's newline-delimited JSON stream, against httpx's MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.ollama_server import OllamaStandIn
from warmpath_adapter.ollama_backend import OllamaBackend
from warmpath_common.config import BackendKindName
from warmpath_common.errors import Unavailable
from warmpath_common.generation import (
    ChatTurn,
    Completion,
    Endpoint,
    FinishReason,
    GenerationRequest,
    TextDelta,
    Usage,
)

TARGET = Endpoint(BackendKindName.OLLAMA, "http://ollama:11434", "llama3.2:3b")


def lines(*chunks: dict[str, object]) -> bytes:
    return "".join(json.dumps(c) + "\n" for c in chunks).encode()


async def run(body: bytes, seen: list[httpx.Request]) -> list[object]:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body)

    backend = OllamaBackend(httpx.AsyncClient(transport=httpx.MockTransport(handle)), 5)
    request = GenerationRequest(model="m", prompt="hi", max_tokens=3, temperature=0.0)
    return [event async for event in backend.stream(request, TARGET)]


async def test_generate_stream_with_usage_and_options() -> None:
    seen: list[httpx.Request] = []
    events = await run(
        lines(
            {"response": "Hi", "done": False},
            {"response": "!", "done": False},
            {
                "response": "",
                "done": True,
                "done_reason": "length",
                "prompt_eval_count": 2,
                "eval_count": 3,
            },
        ),
        seen,
    )
    assert events == [TextDelta("Hi"), TextDelta("!"), Completion(FinishReason.LENGTH, Usage(2, 3))]
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/api/generate"
    assert body["model"] == "llama3.2:3b"
    assert body["options"] == {"num_predict": 3, "temperature": 0.0}


async def test_stream_without_done_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="before it was done"):
        await run(lines({"response": "Hi", "done": False}), [])


async def test_streams_from_an_ollama_server_over_http() -> None:
    with OllamaStandIn() as ollama:
        backend = OllamaBackend(httpx.AsyncClient(), 5)
        target = Endpoint(BackendKindName.OLLAMA, ollama.url, "llama3.2")
        chat = GenerationRequest(model="m", messages=(ChatTurn("user", "hi"),), max_tokens=3)
        events = [event async for event in backend.stream(chat, target)]
    assert events == [
        TextDelta("Hello"),
        TextDelta(" from"),
        TextDelta(" the"),
        Completion(FinishReason.LENGTH, Usage(7, 3)),
    ]
    assert ollama.state.bodies[-1]["keep_alive"] == -1, (
        "the agent, not Ollama's timer, owns residency"
    )


async def test_a_busy_ollama_refusal_is_marked_not_sent() -> None:
    # Ollama answers 503 when its queue is full (OLLAMA_MAX_QUEUE), before generating.
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "server busy, please try again"})

    backend = OllamaBackend(httpx.AsyncClient(transport=httpx.MockTransport(busy)), 5)
    request = GenerationRequest(model="m", prompt="hi", max_tokens=3)
    with pytest.raises(Unavailable, match="HTTP 503") as caught:
        _ = [event async for event in backend.stream(request, TARGET)]
    assert caught.value.not_sent


async def test_an_ollama_stream_cut_short_is_not_marked_not_sent() -> None:
    with pytest.raises(Unavailable) as caught:
        await run(lines({"response": "He", "done": False}), [])
    assert not caught.value.not_sent
