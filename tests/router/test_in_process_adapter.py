"""The backend-adapter's dispatcher inside the router: routing by host, deadline, errors."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes.ports import FakeAdapters
from warmpath_adapter.admission import BackendAdmission
from warmpath_adapter.backends import BackendDispatcher
from warmpath_adapter.metrics import AdapterMetrics
from warmpath_common.config import BackendKindName
from warmpath_common.errors import DeadlineExceeded, ResourceExhausted
from warmpath_common.generation import (
    Completion,
    Endpoint,
    FinishReason,
    GenerationRequest,
    Queued,
    StreamEvent,
    TextDelta,
    Usage,
)
from warmpath_router.in_process_adapter import AdaptersByHost, InProcessAdapter

ENDPOINT = Endpoint(BackendKindName.LLAMA_CPP, "http://127.0.0.1:9", "m")
REQUEST = GenerationRequest(model="m", prompt="Q: sky?\nA:")


class ScriptedBackend:
    """Yields its tokens, advancing a fake clock by `seconds_per_token` for each."""

    def __init__(self, clock: list[float], seconds_per_token: float = 0.0) -> None:
        self.clock = clock
        self.seconds_per_token = seconds_per_token
        self.targets: list[Endpoint] = []

    async def stream(
        self, request: GenerationRequest, target: Endpoint
    ) -> AsyncGenerator[StreamEvent, None]:
        self.targets.append(target)
        for token in ("Blue", ".", " Sky"):
            self.clock[0] += self.seconds_per_token
            yield TextDelta(token)
        yield Completion(FinishReason.STOP, Usage(4, 3))


def adapter(
    backend: ScriptedBackend, clock: list[float], admission: BackendAdmission | None = None
) -> InProcessAdapter:
    dispatcher = BackendDispatcher(
        {BackendKindName.LLAMA_CPP: backend}, AdapterMetrics(CollectorRegistry()), admission
    )
    return InProcessAdapter(dispatcher, clock=lambda: clock[0])


async def test_streams_through_the_dispatcher_to_the_endpoint() -> None:
    clock = [0.0]
    backend = ScriptedBackend(clock)
    events = [e async for e in adapter(backend, clock).generate("h", ENDPOINT, REQUEST, 5.0)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Blue", ".", " Sky"]
    assert isinstance(events[-1], Completion)
    assert backend.targets == [Endpoint(BackendKindName.LLAMA_CPP, ENDPOINT.base_url, "m")]


async def test_a_stream_past_its_deadline_ends_with_deadline_exceeded() -> None:
    clock = [0.0]
    backend = ScriptedBackend(clock, seconds_per_token=1.0)
    received: list[str] = []
    with pytest.raises(DeadlineExceeded, match=r"did not finish within 1\.5 s"):
        async for event in adapter(backend, clock).generate("h", ENDPOINT, REQUEST, 1.5):
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert received == ["Blue"], "what arrived in time was delivered"


async def test_an_admission_refusal_keeps_its_not_sent_mark() -> None:
    clock = [0.0]
    full = BackendAdmission(max_running=0, max_waiting=0)
    with pytest.raises(ResourceExhausted) as refused:
        async for _ in adapter(ScriptedBackend(clock), clock, full).generate(
            "h", ENDPOINT, REQUEST, 5.0
        ):
            pass
    assert refused.value.not_sent, "the relay may retry it on another replica"


async def test_hosts_go_to_their_own_adapter() -> None:
    local, remote = FakeAdapters(tokens=("local",)), FakeAdapters(tokens=("remote",))
    adapters = AdaptersByHost(remote, local, frozenset({"here"}))
    for host in ("here", "there"):
        async for _ in adapters.generate(host, ENDPOINT, REQUEST, 5.0):
            pass
    assert local.calls == [("here", "m")] and remote.calls == [("there", "m")]


def test_local_hosts_without_a_local_adapter_are_refused() -> None:
    with pytest.raises(ValueError, match="in-process adapter"):
        AdaptersByHost(FakeAdapters(), None, frozenset({"here"}))


async def test_a_one_at_a_time_server_gets_one_request_and_the_next_hears_it_waits() -> None:
    clock = [0.0]
    local = adapter(ScriptedBackend(clock), clock)
    first = local.generate("h", ENDPOINT, REQUEST, 5.0)
    assert isinstance(await anext(first), TextDelta), "the first is sent to the server at once"
    second = local.generate("h", ENDPOINT, REQUEST, 5.0)
    assert await anext(second) == Queued(1), "the next waits its turn, and says so"
    await first.aclose()
    assert await anext(second) == Queued(0), "its turn: the server now owes it a token"
    assert isinstance(await anext(second), TextDelta)
    await second.aclose()
