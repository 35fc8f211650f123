"""The first-token timeout: a silent try is cancelled and the request served elsewhere;
waiting its turn is not silence; the timeout follows the model's measured times."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA
from tests.fakes.ports import FakeAdapters, FakeAgents
from warmpath_common.config import AutoRouting, BackendKindName, ModelSpec, RouterSettings
from warmpath_common.convert import ResidencyState
from warmpath_common.errors import DeadlineExceeded, PeerLost, Unavailable
from warmpath_common.generation import Endpoint, GenerationRequest, TextDelta
from warmpath_common.liveness import FirstTokenTimeout
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.decision import RoutedCompletion
from warmpath_router.first_token import FirstTokenTimes
from warmpath_router.metrics import RouterMetrics
from warmpath_router.registry import ModelRegistry
from warmpath_router.relay import Relay

MODEL = ModelSpec.model_validate({**GEMMA, "name": "m", "aliases": []})
QUICK = FirstTokenTimeout(floor_seconds=0.05, ceiling_seconds=0.3)
REQUEST = GenerationRequest(model="m", prompt="hi")


def ready_on(*hosts: str) -> ClusterView:
    view = ClusterView()
    for host in hosts:
        endpoint = Endpoint(BackendKindName.LLAMA_CPP, f"http://{host}", "m")
        replica = Replica("m", host, ResidencyState.READY, 0, "SIM-0", 1.0, endpoint)
        view.update(HostView(host, True, servable=frozenset({"m"}), replicas=(replica,)))
    return view


def relay_for(adapters: FakeAdapters, cluster: ClusterView) -> tuple[Relay, CollectorRegistry]:
    registry = CollectorRegistry()
    relay = Relay(
        ModelRegistry([MODEL], AutoRouting()),
        cluster,
        FakeAgents(),
        adapters,
        RouterSettings(first_token_timeout=QUICK),
        RouterMetrics(registry),
    )
    return relay, registry


async def answer(relay: Relay, timeout: float = 30.0) -> RoutedCompletion:
    final = None
    async for event in relay.generate(REQUEST, timeout):
        if not isinstance(event, TextDelta):
            final = event
    assert final is not None
    return final


async def test_a_silent_replica_is_cancelled_and_another_answers_then_it_is_passed_over() -> None:
    adapters = FakeAdapters(hang_on_host={"h1"})
    relay, metrics = relay_for(adapters, ready_on("h1", "h2"))
    hosts = [(await answer(relay)).route.host for _ in range(4)]
    assert hosts == ["h2"] * 4
    assert adapters.cancelled == ["h1"], "the silent try was cancelled, down to its server"
    assert [host for host, _ in adapters.calls] == ["h1", "h2", "h2", "h2", "h2"], (
        "after its first silence, h1 is passed over while h2 is ready"
    )
    counted = metrics.get_sample_value(
        "warmpath_router_first_token_timeouts_total", {"model": "m", "host": "h1"}
    )
    assert counted == 1
    assert metrics.get_sample_value("warmpath_router_abandoned_try_seconds_total", {"model": "m"})


async def test_with_no_other_replica_the_caller_hears_which_host_is_silent() -> None:
    relay, _ = relay_for(FakeAdapters(hang_on_host={"h1"}), ready_on("h1"))
    with pytest.raises(Unavailable, match=r"m on h1 sent no first token within 0\.3 s"):
        await answer(relay, timeout=30.0)  # UNAVAILABLE long before the deadline


async def test_waiting_its_turn_behind_other_requests_is_not_silence() -> None:
    adapters = FakeAdapters(queued_for=0.6)  # twice the ceiling
    relay, metrics = relay_for(adapters, ready_on("h1"))
    assert (await answer(relay)).route.host == "h1"
    assert adapters.calls == [("h1", "m")]
    assert metrics.get_sample_value("warmpath_router_first_token_timeouts_total") is None


async def test_a_slow_first_token_is_not_cut_when_there_is_nowhere_else_to_go() -> None:
    adapters = FakeAdapters()
    relay, metrics = relay_for(adapters, ready_on("h1"))
    for _ in range(QUICK.min_samples):
        await answer(relay)  # quick answers: the learnt timeout is the 0.05 s floor
    adapters.first_token_after = 0.15  # slower than that, within the 0.3 s ceiling
    assert (await answer(relay)).route.host == "h1"
    assert metrics.get_sample_value("warmpath_router_first_token_timeouts_total") is None, (
        "cutting the only try would turn a slow answer into an error"
    )


def test_the_timeout_follows_the_models_own_times() -> None:
    settings = FirstTokenTimeout(multiplier=4, percentile=0.9, floor_seconds=1, ceiling_seconds=30)
    times = FirstTokenTimes()
    assert times.timeout_for(MODEL, settings, 10) == 30, "unmeasured: the ceiling"
    for seconds in (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 2.0):
        times.observe("m", seconds, 100)
    assert times.timeout_for(MODEL, settings, 10) == 2.0  # 4 x the 90th percentile (0.5 s)
    assert times.timeout_for(MODEL, settings, 2560) == 20.0, "a 10x longer prompt: 10x longer"
    assert times.timeout_for(MODEL, settings, 100_000) == 30, "never past the ceiling"
    quick = FirstTokenTimes()
    for _ in range(5):
        quick.observe("m", 0.01, 10)
    assert quick.timeout_for(MODEL, settings, 10) == 1, "never below the floor"
    own = MODEL.model_copy(update={"first_token_timeout": FirstTokenTimeout(ceiling_seconds=7)})
    assert FirstTokenTimes().timeout_for(own, settings, 10) == 7, "a model's own settings win"
    assert times.timeout_for(MODEL, settings, 10, last_resort=True) == 30, "nowhere else: ceiling"


async def test_with_every_replica_silent_the_caller_hears_each_host() -> None:
    relay, _ = relay_for(FakeAdapters(hang_on_host={"h1", "h2"}), ready_on("h1", "h2"))
    with pytest.raises(Unavailable) as caught:
        await answer(relay, timeout=30.0)
    assert "every replica of m tried failed" in caught.value.message
    assert "m on h1 sent no first token" in caught.value.message
    assert "m on h2 sent no first token" in caught.value.message


async def test_an_adapter_lost_before_the_first_token_is_abandoned_for_another_replica() -> None:
    lost = PeerLost("backend-adapter h1 is unavailable: Connection timed out")
    adapters = FakeAdapters(fail_on_host={"h1": lost})
    relay, _ = relay_for(adapters, ready_on("h1", "h2"))
    assert [(await answer(relay)).route.host for _ in range(2)] == ["h2", "h2"]
    assert [host for host, _ in adapters.calls] == ["h1", "h2", "h2"], "h1 is passed over"


async def test_a_stalled_server_is_passed_over_after_its_deadline_exceeded() -> None:
    stalled = DeadlineExceeded("backend http://h1 sent nothing for 60 s (stalled)")
    adapters = FakeAdapters(fail_on_host={"h1": stalled})
    relay, _ = relay_for(adapters, ready_on("h1", "h2"))
    with pytest.raises(DeadlineExceeded):
        await answer(relay)  # it may have started generating: not run twice
    assert (await answer(relay)).route.host == "h2"
    assert [host for host, _ in adapters.calls] == ["h1", "h2"]
