"""Property-based fuzzing of the stream parsers: whatever a backend sends, the adapter
ends with a Completion or a Warmpath error, never anything else."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warmpath_adapter.ollama_backend import OllamaBackend
from warmpath_adapter.openai_backend import OpenAICompatibleBackend
from warmpath_common.config import BackendKindName
from warmpath_common.errors import WarmpathError
from warmpath_common.generation import (
    ChatTurn,
    Completion,
    Endpoint,
    GenerationRequest,
    TextDelta,
)

CHAT = GenerationRequest(model="m", messages=(ChatTurn("user", "hi"),), max_tokens=4)
PROMPT = GenerationRequest(model="m", prompt="hi", max_tokens=4)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
chunk_like = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "delta": st.dictionaries(st.sampled_from(["content", "role"]), json_values),
                    "text": json_values,
                    "finish_reason": st.sampled_from([None, "stop", "length", "eos", "weird", 3]),
                },
            ),
            max_size=2,
        ),
        "usage": json_values,
        "error": json_values,
    },
)
sse_lines = st.lists(
    st.one_of(
        chunk_like.map(lambda c: "data: " + json.dumps(c)),
        st.just("data: [DONE]"),
        st.text(max_size=30),
        st.just(": keep-alive"),
    ),
    max_size=8,
)


def run(
    backend_factory, body: bytes, request: GenerationRequest, kind: BackendKindName
) -> list[object]:
    headers = {
        "content-type": "text/event-stream"
        if kind is not BackendKindName.OLLAMA
        else "application/x-ndjson"
    }
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=body, headers=headers))
    backend = backend_factory(httpx.AsyncClient(transport=transport), 5)
    target = Endpoint(kind, "http://backend", "m")

    async def consume() -> list[object]:
        return [event async for event in backend.stream(request, target)]

    return asyncio.run(consume())


def check(events_or_error: list[object] | WarmpathError) -> None:
    if isinstance(events_or_error, WarmpathError):
        return
    *deltas, last = events_or_error
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert isinstance(last, Completion)


def attempt(
    backend_factory, body: bytes, request: GenerationRequest, kind: BackendKindName
) -> None:
    with contextlib.suppress(WarmpathError):
        check(run(backend_factory, body, request, kind))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=sse_lines, chat=st.booleans())
def test_openai_sse_never_escapes_as_anything_but_a_warmpath_error(
    lines: list[str], chat: bool
) -> None:
    body = "".join(line + "\n\n" for line in lines).encode()
    attempt(OpenAICompatibleBackend, body, CHAT if chat else PROMPT, BackendKindName.VLLM)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200), chat=st.booleans())
def test_openai_sse_survives_arbitrary_bytes(raw: bytes, chat: bool) -> None:
    attempt(OpenAICompatibleBackend, raw, CHAT if chat else PROMPT, BackendKindName.VLLM)


ollama_line = st.fixed_dictionaries(
    {},
    optional={
        "message": json_values,
        "response": json_values,
        "done": json_values,
        "done_reason": json_values,
        "prompt_eval_count": json_values,
        "eval_count": json_values,
        "error": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.one_of(ollama_line.map(json.dumps), json_values.map(json.dumps), st.text(max_size=20)),
        max_size=8,
    ),
    chat=st.booleans(),
)
def test_ollama_ndjson_never_escapes_as_anything_but_a_warmpath_error(
    lines: list[str], chat: bool
) -> None:
    body = "".join(line + "\n" for line in lines).encode()
    attempt(OllamaBackend, body, CHAT if chat else PROMPT, BackendKindName.OLLAMA)
