"""The router's HTTP front door on the real mesh with the real Gemma model, driven by the
official openai and anthropic clients and by curl."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import anthropic
import openai
import pytest

from tests.integration.conftest import llama_completions
from warmpath_cli.mesh import LocalMesh

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"
# The address the docs' snippets use: the embedded default config's router.http.listen.
DOCS_URL = "http://127.0.0.1:50080"
STORY = [{"role": "user", "content": "Once upon a time"}]


@pytest.fixture
def http_url(mesh: LocalMesh) -> str:
    return f"http://127.0.0.1:{mesh.ports.http}"


@pytest.fixture
def openai_client(http_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=http_url + "/v1", api_key="unused", max_retries=0, timeout=120
    )


@pytest.fixture
def anthropic_client(http_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=http_url, api_key="unused", max_retries=0, timeout=120)


async def test_openai_chat_answers_from_gemma_with_its_route(
    openai_client: openai.AsyncOpenAI,
) -> None:
    raw = await openai_client.chat.completions.with_raw_response.create(
        model="gemma",
        messages=STORY,
        max_tokens=4,
        temperature=0,
        seed=1,
        extra_headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
    )
    completion = raw.parse()
    assert completion.model == "gemma3-270m"
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    headers = raw.headers
    assert headers["x-warmpath-served-model"] == "gemma3-270m"
    assert headers["x-warmpath-alias"] == "gemma"
    assert (headers["x-warmpath-host"], headers["x-warmpath-backend"]) == ("local", "llama_cpp")
    assert headers["x-warmpath-gpu-index"] == "0"
    assert headers["x-warmpath-cold-start"] in ("true", "false")
    assert float(headers["x-warmpath-load-seconds"]) >= 0
    assert json.loads(headers["x-warmpath-fallback-hops"]) == []
    assert headers["x-warmpath-trace-id"] == TRACE_ID


async def test_openai_chat_streams_with_usage(openai_client: openai.AsyncOpenAI) -> None:
    async with openai_client.chat.completions.with_streaming_response.create(
        model="gemma",
        messages=STORY,
        max_completion_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-warmpath-served-model"] == "gemma3-270m"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = [chunk async for chunk in await response.parse()]
    assert {chunk.model for chunk in chunks} == {"gemma3-270m"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens == 6


async def test_openai_completions_both_ways(openai_client: openai.AsyncOpenAI) -> None:
    completion = await openai_client.completions.create(
        model="gemma3-270m", prompt="The capital of France is", max_tokens=3, temperature=0
    )
    assert completion.model == "gemma3-270m"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    stream = await openai_client.completions.create(
        model="gemma3-270m", prompt="The capital of France is", max_tokens=3, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].text for c in chunks)


async def test_models_are_listed_with_their_aliases(openai_client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in openai_client.models.list()]
    assert {"gemma3-270m", "gemma", "gemma-untouched", "broken-model"} <= set(ids)


async def test_anthropic_messages_both_ways(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(
        model="gemma", system="You tell stories.", max_tokens=5, messages=STORY
    )
    assert message.model == "gemma3-270m"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5 and message.usage.input_tokens > 0
    stream = await anthropic_client.messages.create(
        model="gemma", system="You tell stories.", max_tokens=5, messages=STORY, stream=True
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 5


async def test_errors_raise_each_clients_own_exceptions(
    openai_client: openai.AsyncOpenAI, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(openai.NotFoundError, match="gemma3-270m"):
        await openai_client.chat.completions.create(model="gemma-4", messages=STORY)
    with pytest.raises(anthropic.NotFoundError, match="gemma3-270m"):
        await anthropic_client.messages.create(model="gemma-4", max_tokens=4, messages=STORY)
    with pytest.raises(openai.BadRequestError, match="context length"):
        await openai_client.chat.completions.create(
            model="untouched", messages=STORY, max_tokens=4096
        )
    with pytest.raises(openai.BadRequestError, match="n=3"):
        await openai_client.chat.completions.create(model="gemma", messages=STORY, n=3)
    with pytest.raises(anthropic.BadRequestError, match=r"messages\[0\]\.role"):
        await anthropic_client.messages.create(
            model="gemma",
            max_tokens=4,
            messages=[{"role": "system", "content": "x"}],
        )
    expired = {"x-warmpath-timeout-seconds": "0.0001"}
    with pytest.raises(openai.InternalServerError) as from_openai:
        await openai_client.chat.completions.create(
            model="gemma", messages=STORY, max_tokens=4, extra_headers=expired
        )
    with pytest.raises(anthropic.InternalServerError) as from_anthropic:
        await anthropic_client.messages.create(
            model="gemma", max_tokens=4, messages=STORY, extra_headers=expired
        )
    assert from_openai.value.status_code == from_anthropic.value.status_code == 504


async def curl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sN", "--max-time", "120", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode()


async def test_curl_reads_raw_server_sent_events(http_url: str) -> None:
    json_header = ("-H", "content-type: application/json")
    body = {"model": "gemma", "messages": STORY, "max_tokens": 3, "stream": True}
    out = await curl(*json_header, "-d", json.dumps(body), http_url + "/v1/chat/completions")
    events = [line for line in out.splitlines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    out = await curl(
        *json_header,
        *("-H", "anthropic-version: 2023-06-01"),
        "-d",
        json.dumps({**body, "system": "Be brief."}),
        http_url + "/v1/messages",
    )
    names = [line[7:] for line in out.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"


async def test_a_client_that_stops_reading_stops_llama_cpp(
    mesh: LocalMesh, openai_client: openai.AsyncOpenAI
) -> None:
    """As the gRPC cancel test: the abandoned stream never finishes at llama.cpp."""
    await openai_client.chat.completions.create(model="gemma", messages=STORY, max_tokens=1)
    _, already = llama_completions(mesh)
    stream = await openai_client.chat.completions.create(
        model="gemma", messages=STORY, max_tokens=1500, stream=True
    )
    received = 0
    async for _ in stream:
        received += 1
        if received == 5:
            break
    await stream.close()
    after = await openai_client.chat.completions.create(model="gemma", messages=STORY, max_tokens=4)
    assert after.usage is not None and after.usage.completion_tokens == 4
    completions, _ = llama_completions(mesh, already)
    assert completions == ["4"], f"the abandoned request ran on: {completions}"


async def test_the_docs_snippets_run_against_the_mesh(http_url: str) -> None:
    """docs/http-api.md's OpenAI, Anthropic and curl snippets, run as written but for
    the address."""
    blocks = re.findall(r"```(python|sh)\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert [language for language, _ in blocks] == ["python", "python", "sh"]
    outputs = []
    for language, code in blocks:
        assert DOCS_URL in code
        command = (sys.executable, "-c") if language == "python" else ("bash", "-c")
        process = await asyncio.create_subprocess_exec(
            *command,
            code.replace(DOCS_URL, http_url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode == 0, err.decode()
        outputs.append(out.decode())
    openai_out, anthropic_out, curl_out = outputs
    assert openai_out.startswith("gemma3-270m ")
    assert anthropic_out.startswith("gemma3-270m ")
    assert "data: [DONE]" in curl_out and '"type": "message"' in curl_out
