"""The HTTP front door over a relay with fake agents and adapters, driven by the official
openai and anthropic clients: route headers, each error's status and exception type,
a failure after the first byte, tokens. (tests/integration/test_http_api.py: the real mesh.)"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from tests.fakes.ports import FakeAdapters, FakeAgents
from tests.router.test_relay import BACKUP, PRIMARY
from warmpath_cli.banner import http_banner
from warmpath_common.config import (
    AutoRouting,
    CallerToken,
    HttpSettings,
    RouterSettings,
    WarmpathConfig,
    load_config,
)
from warmpath_common.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from warmpath_common.security import BearerTokenGuard, hash_token
from warmpath_router.cluster import ClusterView, HostView
from warmpath_router.http_api import HttpFrontDoor
from warmpath_router.metrics import RouterMetrics
from warmpath_router.registry import ModelRegistry
from warmpath_router.relay import Relay

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TOKEN = "s3cret-token"


@dataclass
class Door:
    url: str
    agents: FakeAgents
    adapters: FakeAdapters

    def openai(self, api_key: str = "unused") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0)

    def anthropic(self, api_key: str = "unused") -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=api_key, max_retries=0)


async def start_door(
    agents: FakeAgents | None = None,
    adapters: FakeAdapters | None = None,
    *,
    secured: bool = False,
    max_in_flight_per_caller: int = 64,
    max_body_bytes: int = 1024 * 1024,
) -> tuple[Door, HttpFrontDoor]:
    agents = agents or FakeAgents()
    adapters = adapters or FakeAdapters()
    cluster = ClusterView()
    cluster.update(HostView("h1", reachable=True, servable=frozenset({"primary", "backup"})))
    settings = RouterSettings(max_in_flight_per_caller=max_in_flight_per_caller)
    relay = Relay(
        ModelRegistry([PRIMARY, BACKUP], AutoRouting(default_model="primary")),
        cluster,
        agents,
        adapters,
        settings,
        RouterMetrics(CollectorRegistry()),
    )
    tokens = [
        CallerToken(name="team", sha256=hash_token(TOKEN)),
        CallerToken(name="backup-only", sha256=hash_token("narrow"), models=("backup",)),
    ]
    door = HttpFrontDoor(
        relay,
        HttpSettings(max_body_bytes=max_body_bytes),
        BearerTokenGuard(tokens, "") if secured else None,
        None,
        1.0,
    )
    port = await door.start("127.0.0.1:0")
    return Door(f"http://127.0.0.1:{port}", agents, adapters), door


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    started, server = await start_door()
    yield started
    await server.stop()


CHAT = {"model": "p", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "p", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


async def test_chat_answers_with_the_served_model_and_the_route_in_headers(door: Door) -> None:
    raw = await door.openai().chat.completions.with_raw_response.create(
        model="p",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}],
        max_completion_tokens=5,
        temperature=0.5,
        top_p=0.9,
        stop=["\n"],
        seed=7,
        extra_headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    )
    completion = raw.parse()
    assert completion.model == "primary"
    assert completion.choices[0].message.content == "Hello world"
    assert completion.usage is not None and completion.usage.completion_tokens == 2
    assert raw.headers["x-warmpath-served-model"] == "primary"
    assert raw.headers["x-warmpath-alias"] == "p"
    assert raw.headers["x-warmpath-host"] == "h1"
    assert raw.headers["x-warmpath-cold-start"] == "true"
    assert raw.headers["x-warmpath-woken"] == "false", "loaded from disk, not woken"
    assert raw.headers["x-warmpath-load-seconds"] == "1.500"
    assert raw.headers["x-warmpath-trace-id"] == TRACE_ID
    (_, sent), *_ = door.adapters.requests
    assert (sent.max_tokens, sent.temperature, sent.top_p, sent.stop, sent.seed) == (
        5,
        0.5,
        0.9,
        ("\n",),
        7,
    )
    assert [t.role for t in sent.messages] == ["system", "user"]


async def test_a_fallback_shows_in_the_headers_before_the_streamed_body() -> None:
    started, server = await start_door(FakeAgents(fail={"primary": Unavailable("GPU on fire")}))
    try:
        async with started.openai().chat.completions.with_streaming_response.create(
            **CHAT, stream=True, stream_options={"include_usage": True}
        ) as response:
            hops = json.loads(response.headers["x-warmpath-fallback-hops"])
            assert response.headers["x-warmpath-served-model"] == "backup"
            chunks = [chunk async for chunk in await response.parse()]
    finally:
        await server.stop()
    assert hops == [{"from": "primary", "to": "backup", "reason": "UNAVAILABLE: GPU on fire"}]
    assert {chunk.model for chunk in chunks} == {"backup"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_anthropic_messages_stream_in_anthropics_order(door: Door) -> None:
    stream = await door.anthropic().messages.create(**MESSAGE, system="terse", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 2
    (_, sent), *_ = door.adapters.requests
    assert [t.role for t in sent.messages] == ["system", "user"]


async def test_anthropic_message_not_streamed(door: Door) -> None:
    message = await door.anthropic().messages.create(**MESSAGE)
    assert message.model == "primary"
    assert message.content[0].type == "text" and message.content[0].text == "Hello world"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 2)


@pytest.mark.parametrize(
    ("failure", "status", "openai_error", "anthropic_error"),
    [
        (
            Unavailable("no GPU has room"),
            503,
            openai.InternalServerError,
            anthropic.InternalServerError,
        ),
        (
            DeadlineExceeded("too slow"),
            504,
            openai.InternalServerError,
            anthropic.InternalServerError,
        ),
        (
            ResourceExhausted("every replica is busy"),
            429,
            openai.RateLimitError,
            anthropic.RateLimitError,
        ),
    ],
)
async def test_failures_before_the_first_byte_get_the_status_and_exception_type(
    failure: Exception, status: int, openai_error: type, anthropic_error: type
) -> None:
    started, server = await start_door(FakeAgents(fail={"primary": failure, "backup": failure}))
    try:
        with pytest.raises(openai_error) as from_openai:
            await started.openai().chat.completions.create(**CHAT, stream=True)
        with pytest.raises(anthropic_error) as from_anthropic:
            await started.anthropic().messages.create(**MESSAGE)
    finally:
        await server.stop()
    for caught in (from_openai.value, from_anthropic.value):
        assert caught.status_code == status
        if status == 429:
            assert caught.response.headers["retry-after"] == "1"
    assert (
        from_anthropic.value.body["error"]["type"]
        == {
            503: "overloaded_error",
            504: "timeout_error",
            429: "rate_limit_error",
        }[status]
    )


async def test_the_per_caller_limit_answers_429_with_retry_after() -> None:
    gate = asyncio.Event()
    started, server = await start_door(adapters=FakeAdapters(gate=gate), max_in_flight_per_caller=1)
    try:
        async with started.openai().chat.completions.with_streaming_response.create(
            **CHAT, stream=True
        ):
            with pytest.raises(openai.RateLimitError) as caught:
                await started.openai().chat.completions.create(**CHAT)
            gate.set()
    finally:
        await server.stop()
    assert "max_in_flight_per_caller" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "1"


async def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event() -> None:
    adapters = FakeAdapters(fail={"primary": (1, Unavailable("model server cut off"))})
    started, server = await start_door(adapters=adapters)
    try:
        received = []
        with pytest.raises(openai.APIError, match="model server cut off"):
            stream = await started.openai().chat.completions.create(**CHAT, stream=True)
            async for chunk in stream:
                received.append(chunk)
        assert received, "the error came before the first chunk"
        anthropic_events = []
        with pytest.raises(anthropic.APIStatusError, match="model server cut off"):
            events = await started.anthropic().messages.create(**MESSAGE, stream=True)
            async for event in events:
                anthropic_events.append(event.type)
        assert anthropic_events[0] == "message_start"
    finally:
        await server.stop()


async def test_bad_fields_are_named(door: Door) -> None:
    client = door.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**CHAT, n=2)
    assert caught.value.body is not None and caught.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError, match="temperature"):
        await client.chat.completions.create(**CHAT, extra_body={"temperature": "hot"})
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\].content\[0\].type"):
        await client.chat.completions.create(
            model="p",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="temperature: expected a number"):
        await door.anthropic().messages.create(**MESSAGE, extra_body={"temperature": "warm"})


async def test_unknown_models_are_404_with_the_models_listed(door: Door) -> None:
    with pytest.raises(openai.NotFoundError) as from_openai:
        await door.openai().completions.create(model="nope", prompt="hi")
    error = from_openai.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert error["available_models"] == ["backup", "primary"]
    with pytest.raises(anthropic.NotFoundError) as from_anthropic:
        await door.anthropic().messages.create(**{**MESSAGE, "model": "nope"})
    assert from_anthropic.value.body["error"]["type"] == "not_found_error"


async def test_wire_problems_are_4xx_in_the_dialects_shape() -> None:
    started, server = await start_door(max_body_bytes=1000)
    try:
        async with httpx.AsyncClient(base_url=started.url) as client:
            malformed = await client.post(
                "/v1/chat/completions",
                content=b"{nope",
                headers={"content-type": "application/json"},
            )
            form = await client.post("/v1/chat/completions", content=b"a=b")
            oversize = await client.post(
                "/v1/messages",
                json={"x": "y" * 2000},
                headers={"anthropic-version": "2023-06-01"},
            )
            unversioned = await client.post("/v1/messages", json=MESSAGE)
            wrong_method = await client.get("/v1/chat/completions")
    finally:
        await server.stop()
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    assert form.status_code == 415 and "application/json" in form.json()["error"]["message"]
    assert oversize.status_code == 413
    assert oversize.json()["error"]["type"] == "request_too_large"
    assert unversioned.status_code == 400
    assert "anthropic-version" in unversioned.json()["error"]["message"]
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


async def test_the_same_tokens_as_grpc_for_both_dialects() -> None:
    started, server = await start_door(secured=True)
    try:
        with pytest.raises(openai.AuthenticationError):
            await started.openai("wrong").chat.completions.create(**CHAT)
        with pytest.raises(anthropic.AuthenticationError):
            await started.anthropic("wrong").messages.create(**MESSAGE)
        with pytest.raises(openai.PermissionDeniedError, match="may not use primary"):
            await started.openai("narrow").chat.completions.create(**CHAT)
        answer = await started.openai(TOKEN).chat.completions.create(**CHAT)
        message = await started.anthropic(TOKEN).messages.create(**MESSAGE)
        models = await started.openai(TOKEN).models.list()
    finally:
        await server.stop()
    assert answer.model == message.model == "primary"
    assert [m.id for m in models.data] == ["backup", "primary", "p"]


async def run_banner_curl(config: WarmpathConfig, env: dict[str, str]) -> dict[str, Any]:
    """Runs the `curl` line `warmpath up` prints for `config`, as a user pastes it."""
    banner = http_banner(config)
    assert banner is not None
    _, line = banner
    assert line.startswith("$ curl ")
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        line[2:] + " --max-time 30",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out
    answer: dict[str, Any] = json.loads(out)
    return answer


def listening_at(config: WarmpathConfig, url: str, *, secured: bool = False) -> WarmpathConfig:
    router = config.router.model_copy(update={"http": HttpSettings(listen=url.split("//")[1])})
    security = config.security.model_copy(update={"enabled": secured})
    return config.model_copy(update={"router": router, "security": security})


async def test_the_curl_line_warmpath_up_prints_gets_an_answer() -> None:
    default = load_config(None)
    banner = http_banner(default)
    assert banner is not None and "http://127.0.0.1:50080/v1" in banner[0]
    assert http_banner(default.model_copy(update={"router": RouterSettings()})) is None
    started, server = await start_door()
    secured, secured_server = await start_door(secured=True)
    try:
        answer = await run_banner_curl(listening_at(default, started.url), {})
        with_token = await run_banner_curl(
            listening_at(default, secured.url, secured=True), {"WARMPATH_TOKEN": TOKEN}
        )
    finally:
        await server.stop()
        await secured_server.stop()
    assert answer["model"] == with_token["model"] == "primary"
    assert answer["choices"][0]["message"]["content"] == "Hello world"
