"""Ollama's newline-delimited JSON stream, against httpx's MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from warmpath_adapter.backends import BackendTarget
from warmpath_adapter.ollama_backend import OllamaBackend
from warmpath_common.config import BackendKindName
from warmpath_common.errors import Unavailable
from warmpath_common.generation import Completion, FinishReason, GenerationRequest, TextDelta, Usage

TARGET = BackendTarget(BackendKindName.OLLAMA, "http://ollama:11434", "llama3.2:3b")


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
