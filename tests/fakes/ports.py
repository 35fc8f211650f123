"""Fakes for the router's ports to the agents and adapters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from warmpath_common.config import BackendKindName
from warmpath_common.errors import WarmpathError
from warmpath_common.generation import (
    AdapterEvent,
    Completion,
    Endpoint,
    FinishReason,
    GenerationRequest,
    Queued,
    TextDelta,
    Usage,
)
from warmpath_router.ports import LoadResult


@dataclass
class FakeAgents:
    fail: dict[str, WarmpathError] = field(default_factory=dict)
    loads: list[tuple[str, str]] = field(default_factory=list)

    leases: list[tuple[str, str, float]] = field(default_factory=list)
    verified: list[tuple[str, str]] = field(default_factory=list)
    """The loads that asked the agent to check the model's server."""
    asleep: set[str] = field(default_factory=set)
    """Models whose load is a wake from sleep (the warm tier)."""

    async def ensure_loaded(
        self,
        host: str,
        model: str,
        timeout_seconds: float,
        warm_requests: int = 0,
        lease_seconds: float = 0.0,
        verify: bool = False,
    ) -> LoadResult:
        self.loads.append((host, model))
        self.leases.append((host, model, lease_seconds))
        if verify:
            self.verified.append((host, model))
        if model in self.fail:
            raise self.fail[model]
        return LoadResult(
            Endpoint(BackendKindName.LLAMA_CPP, f"http://{host}/{model}", model),
            gpu_index=0,
            gpu_uuid="SIM-0",
            cold_start=True,
            load_seconds=1.5,
            woken=model in self.asleep,
        )


@dataclass
class FakeAdapters:
    """Streams `tokens`; `fail_after` chunks of a model's stream, raises its error.

    `fail_on_host` fails every stream on a host before its first chunk, and
    `fail_on_url` every stream to an endpoint's base URL; `calls` records each
    stream's (host, model), including those that fail. Streams on a host in
    `hang_on_host` never send anything (a stopped server) until cancelled, which
    `cancelled` records; `queued_for` seconds of waiting its turn (Queued events)
    precede every stream.
    """

    tokens: tuple[str, ...] = ("Hello", " world")
    fail: dict[str, tuple[int, WarmpathError]] = field(default_factory=dict)
    fail_on_host: dict[str, WarmpathError] = field(default_factory=dict)
    fail_on_url: dict[str, WarmpathError] = field(default_factory=dict)
    requests: list[tuple[str, GenerationRequest]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    hang_on_host: set[str] = field(default_factory=set)
    cancelled: list[str] = field(default_factory=list)
    queued_for: float = 0.0
    first_token_after: float = 0.0
    """Seconds every stream thinks before its first chunk (a slow, not hung, server)."""
    gate: asyncio.Event | None = None
    """When set, each stream waits for it after its first chunk (holds requests in flight)."""
    hold: asyncio.Event | None = None
    """When set, each stream waits for it before it starts (holds requests in flight before
    their first chunk)."""

    async def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncGenerator[AdapterEvent, None]:
        if self.hold is not None:
            await self.hold.wait()
        self.calls.append((host, endpoint.served_model_id))
        if self.queued_for:
            yield Queued(1)
            await asyncio.sleep(self.queued_for)  # a request ahead being served
            yield Queued(0)
        if host in self.hang_on_host:
            try:
                await asyncio.Event().wait()
            finally:
                self.cancelled.append(host)
        if host in self.fail_on_host:
            raise self.fail_on_host[host]
        if endpoint.base_url in self.fail_on_url:
            raise self.fail_on_url[endpoint.base_url]
        self.requests.append((endpoint.served_model_id, request))
        if self.first_token_after:
            await asyncio.sleep(self.first_token_after)
        failure = self.fail.get(endpoint.served_model_id)
        for position, token in enumerate(self.tokens):
            if failure is not None and failure[0] == position:
                raise failure[1]
            yield TextDelta(token)
            if self.gate is not None and position == 0:
                await self.gate.wait()
        if failure is not None:
            raise failure[1]
        yield Completion(FinishReason.STOP, Usage(3, len(self.tokens)))
