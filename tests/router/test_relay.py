from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA
from tests.fakes.ports import FakeAdapters, FakeAgents
from warmpath_common.config import AutoRouting, ModelSpec, RouterSettings
from warmpath_common.convert import ResidencyState
from warmpath_common.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
)
from warmpath_common.generation import Endpoint, GenerationRequest, TextDelta
from warmpath_common.security import Caller
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.decision import RoutedCompletion
from warmpath_router.metrics import RouterMetrics
from warmpath_router.registry import ModelRegistry
from warmpath_router.relay import Relay
from warmpath_router.retry import RetryBudget
from warmpath_router.routing import RouteReason

PRIMARY = ModelSpec.model_validate(
    {**GEMMA, "name": "primary", "aliases": ["p"], "fallbacks": ["backup"]}
)
BACKUP = ModelSpec.model_validate({**GEMMA, "name": "backup", "aliases": []})


def make_relay(
    agents: FakeAgents, adapters: FakeAdapters, cluster: ClusterView | None = None
) -> Relay:
    if cluster is None:
        cluster = ClusterView()
        cluster.update(HostView("h1", reachable=True, servable=frozenset({"primary", "backup"})))
    registry = ModelRegistry([PRIMARY, BACKUP], AutoRouting(default_model="primary"))
    return Relay(
        registry, cluster, agents, adapters, RouterSettings(), RouterMetrics(CollectorRegistry())
    )


async def collect(relay: Relay, request: GenerationRequest) -> tuple[str, RoutedCompletion]:
    text = ""
    final = None
    async for event in relay.generate(request, timeout_seconds=30):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            final = event
    assert final is not None
    return text, final


async def test_generate_reports_the_route_taken() -> None:
    text, final = await collect(
        make_relay(FakeAgents(), FakeAdapters()), GenerationRequest(model="p", prompt="hi")
    )
    assert text == "Hello world"
    assert final.route.served_model == "primary"
    assert final.route.alias == "p"
    assert final.route.cold_start
    assert final.route.fallback_hops == ()


async def test_the_route_says_whether_the_model_was_woken_from_sleep_or_loaded_cold() -> None:
    relay = make_relay(FakeAgents(asleep={"primary"}), FakeAdapters())
    _, woken = await collect(relay, GenerationRequest(model="primary", prompt="hi"))
    _, cold = await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert woken.route.woken
    assert woken.route.load_description == "woken from sleep in 1.5 s"
    assert not cold.route.woken
    assert cold.route.load_description == "cold load in 1.5 s"


async def test_unavailable_before_first_token_falls_back_and_says_why() -> None:
    agents = FakeAgents(fail={"primary": Unavailable("GPU on fire")})
    _text, final = await collect(
        make_relay(agents, FakeAdapters()), GenerationRequest(model="primary", prompt="hi")
    )
    assert final.route.served_model == "backup"
    (hop,) = final.route.fallback_hops
    assert (hop.from_model, hop.to_model) == ("primary", "backup")
    assert "GPU on fire" in hop.reason


async def test_no_fallback_after_the_first_chunk() -> None:
    adapters = FakeAdapters(fail={"primary": (1, Unavailable("cut"))})
    relay = make_relay(FakeAgents(), adapters)
    received = []
    with pytest.raises(Unavailable, match="cut"):
        async for event in relay.generate(GenerationRequest(model="primary", prompt="hi"), 30):
            received.append(event)
    assert received == [TextDelta("Hello")]
    assert [model for model, _ in adapters.requests] == ["primary"]


async def test_deterministic_errors_are_not_retried() -> None:
    adapters = FakeAdapters(fail={"primary": (0, InvalidRequest("bad seed"))})
    with pytest.raises(InvalidRequest):
        await collect(
            make_relay(FakeAgents(), adapters), GenerationRequest(model="primary", prompt="hi")
        )
    assert [model for model, _ in adapters.requests] == ["primary"]


async def test_invalid_and_unknown_requests_do_no_backend_work() -> None:
    agents, adapters = FakeAgents(), FakeAdapters()
    relay = make_relay(agents, adapters)
    with pytest.raises(ModelNotFound):
        await collect(relay, GenerationRequest(model="nope", prompt="hi"))
    with pytest.raises(InvalidRequest):
        await collect(relay, GenerationRequest(model="primary", prompt="hi", max_tokens=0))
    assert agents.loads == [] and adapters.requests == []


async def test_whole_chain_failing_lists_every_reason() -> None:
    agents = FakeAgents(fail={"primary": Unavailable("one"), "backup": Unavailable("two")})
    with pytest.raises(Unavailable) as caught:
        await collect(
            make_relay(agents, FakeAdapters()), GenerationRequest(model="primary", prompt="hi")
        )
    assert "one" in caught.value.message and "two" in caught.value.message


async def test_warm_replica_skips_the_load_and_route_loads_nothing() -> None:
    cluster = ClusterView()
    endpoint = Endpoint(GEMMA_BACKEND, "http://warm", "primary")
    cluster.update(
        HostView(
            "h1",
            reachable=True,
            servable=frozenset({"primary", "backup"}),
            replicas=(Replica("primary", "h1", ResidencyState.READY, 0, "SIM-0", 2.0, endpoint),),
        )
    )
    agents = FakeAgents()
    relay = make_relay(agents, FakeAdapters(), cluster)
    decision = relay.decide(GenerationRequest(model="primary", prompt="hi"))
    assert decision.placement.reason is RouteReason.RESIDENT
    assert agents.loads == []
    _, final = await collect(relay, GenerationRequest(model="primary", prompt="hi"))
    assert not final.route.cold_start


GEMMA_BACKEND = PRIMARY.backend


def slow_cluster(model: str, load_seconds: float) -> ClusterView:
    """One host where `model` failed after a load of `load_seconds`: the next will take as long."""
    view = ClusterView()
    failed = Replica(model, "h1", ResidencyState.FAILED, 0, "SIM-0", load_seconds, None)
    view.update(
        HostView(
            "h1", reachable=True, servable=frozenset({"primary", "backup"}), replicas=(failed,)
        )
    )
    return view


async def test_a_cold_load_longer_than_the_deadline_takes_the_fallback() -> None:
    agents = FakeAgents()
    relay = make_relay(agents, FakeAdapters(), slow_cluster("primary", load_seconds=90))
    final = None
    async for event in relay.generate(
        GenerationRequest(model="primary", prompt="hi"), timeout_seconds=5
    ):
        if isinstance(event, RoutedCompletion):
            final = event
    assert final is not None and final.route.served_model == "backup"
    (hop,) = final.route.fallback_hops
    assert hop.reason.startswith("DEADLINE_EXCEEDED: primary needs a cold load")
    assert ("h1", "primary") not in agents.loads, (
        "no load was started that could not finish in time"
    )


async def test_without_a_fallback_a_too_slow_cold_load_fails_fast_and_says_why() -> None:
    relay = make_relay(FakeAgents(), FakeAdapters(), slow_cluster("backup", load_seconds=90))
    with pytest.raises(DeadlineExceeded, match="raise the deadline or configure a fallback"):
        async for _ in relay.generate(
            GenerationRequest(model="backup", prompt="hi"), timeout_seconds=5
        ):
            pass


def two_hosts(*models: str) -> ClusterView:
    view = ClusterView()
    for name in ("h1", "h2"):
        view.update(HostView(name, reachable=True, servable=frozenset(models)))
    return view


def loads_fail_on_h1(agents: FakeAgents, error: WarmpathError) -> None:
    """Every load on h1 raises `error`; h2 loads. Both are recorded in `agents.loads`."""

    async def ensure_loaded(host: str, model: str, timeout_seconds: float, **_: object):
        agents.loads.append((host, model))
        if host == "h1":
            raise error
        return await FakeAgents().ensure_loaded(host, model, timeout_seconds)

    agents.ensure_loaded = ensure_loaded  # type: ignore[method-assign]


async def test_a_failing_replica_is_retried_elsewhere_then_skipped_once_its_circuit_opens() -> None:
    agents = FakeAgents()
    relay = make_relay(agents, FakeAdapters(), two_hosts("backup"))
    loads_fail_on_h1(agents, Unavailable("h1 is sick"))
    for _ in range(3):
        _, final = await collect(relay, GenerationRequest(model="backup", prompt="hi"))
        assert final.route.host == "h2", "the same request was retried on the other replica"
        assert final.route.fallback_hops == (), "a retry on another replica is not a fallback"
    assert [host for host, _ in agents.loads] == ["h1", "h2"] * 3
    _, final = await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert final.route.host == "h2"
    assert agents.loads[-1] == ("h2", "backup") and agents.loads[-2] == ("h2", "backup"), (
        "with its circuit open, h1 is not even tried"
    )


async def test_a_full_replica_is_retried_elsewhere_but_its_circuit_stays_closed() -> None:
    agents = FakeAgents()
    relay = make_relay(agents, FakeAdapters(), two_hosts("backup"))
    loads_fail_on_h1(agents, ResourceExhausted("h1 has no room right now", not_sent=True))
    for _ in range(4):
        _, final = await collect(relay, GenerationRequest(model="backup", prompt="hi"))
        assert final.route.host == "h2"
    assert [host for host, _ in agents.loads] == ["h1", "h2"] * 4, (
        "busy is not broken: h1 is still tried first every time"
    )


async def test_retries_stop_when_the_budget_is_spent() -> None:
    agents = FakeAgents(fail={"backup": Unavailable("everything is down")})
    relay = Relay(
        ModelRegistry([PRIMARY, BACKUP], AutoRouting()),
        two_hosts("backup"),
        agents,
        FakeAdapters(),
        RouterSettings(),
        RouterMetrics(CollectorRegistry()),
        retry_budget=RetryBudget(ratio=0.0, floor_per_second=0.0, cap=1.0),
    )
    for _ in range(3):
        with pytest.raises(Unavailable):
            await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert len(agents.loads) == 4, "one retry from the budget, then none: 3 requests + 1 retry"


async def test_one_caller_cannot_take_every_slot() -> None:
    gate = asyncio.Event()
    relay = Relay(
        ModelRegistry([PRIMARY, BACKUP], AutoRouting()),
        ClusterView(
            {"h1": HostView("h1", reachable=True, servable=frozenset({"primary", "backup"}))}
        ),
        FakeAgents(),
        FakeAdapters(hold=gate),
        RouterSettings(max_in_flight_per_caller=2),
        RouterMetrics(CollectorRegistry()),
    )

    async def run(address: str) -> None:
        request = GenerationRequest(model="primary", prompt="hi")
        async for _ in relay.generate(request, 30, Caller(address)):
            pass

    greedy = [asyncio.create_task(run("10.0.0.1")) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(ResourceExhausted, match=r"router\.max_in_flight_per_caller"):
        await run("10.0.0.1")
    other = asyncio.create_task(run("10.0.0.2"))
    gate.set()
    await asyncio.gather(*greedy, other)
    await run("10.0.0.1")  # slots come back when requests finish


async def test_a_caller_may_only_use_its_models_and_their_permitted_fallbacks() -> None:
    agents = FakeAgents(fail={"primary": Unavailable("down")})
    relay = make_relay(agents, FakeAdapters())
    limited = Caller("team-a", frozenset({"backup"}))
    with pytest.raises(PermissionDenied, match="caller team-a may not use primary"):
        await collect_as(relay, GenerationRequest(model="p", prompt="hi"), limited)
    assert agents.loads == []
    primary_only = Caller("team-b", frozenset({"primary"}))
    with pytest.raises(Unavailable, match="down"):
        await collect_as(relay, GenerationRequest(model="primary", prompt="hi"), primary_only)
    assert ("h1", "backup") not in agents.loads, "a fallback the caller may not use is skipped"


async def collect_as(relay: Relay, request: GenerationRequest, caller: Caller) -> None:
    async for _ in relay.generate(request, 30, caller):
        pass


async def test_a_warm_fallback_is_preferred_to_a_cold_one() -> None:
    chain = ModelSpec.model_validate(
        {**GEMMA, "name": "first", "aliases": [], "fallbacks": ["cold-backup", "warm-backup"]}
    )
    cold = ModelSpec.model_validate({**GEMMA, "name": "cold-backup", "aliases": []})
    warm = ModelSpec.model_validate({**GEMMA, "name": "warm-backup", "aliases": []})
    endpoint = Endpoint(GEMMA_BACKEND, "http://warm", "warm-backup")
    view = ClusterView()
    view.update(
        HostView(
            "h1",
            reachable=True,
            servable=frozenset({"first", "cold-backup", "warm-backup"}),
            replicas=(
                Replica("warm-backup", "h1", ResidencyState.READY, 0, "SIM-0", 2.0, endpoint),
            ),
        )
    )
    relay = Relay(
        ModelRegistry([chain, cold, warm], AutoRouting()),
        view,
        FakeAgents(fail={"first": Unavailable("down")}),
        FakeAdapters(),
        RouterSettings(),
        RouterMetrics(CollectorRegistry()),
    )
    _, final = await collect(relay, GenerationRequest(model="first", prompt="hi"))
    assert final.route.served_model == "warm-backup"
    assert not final.route.cold_start


async def test_requests_in_flight_hold_a_lease_that_is_renewed_while_they_last() -> None:
    gate = asyncio.Event()
    agents = FakeAgents()
    relay = make_relay(agents, FakeAdapters(hold=gate))
    running = asyncio.create_task(collect(relay, GenerationRequest(model="primary", prompt="hi")))
    await asyncio.sleep(0.01)
    assert agents.leases == [("h1", "primary", 15.0)], "a cold load takes a lease"
    keeper = asyncio.create_task(relay.keep_leases(every_seconds=0.01))
    await asyncio.sleep(0.05)
    keeper.cancel()
    assert len(agents.leases) > 1 and all(
        lease == ("h1", "primary", 15.0) for lease in agents.leases
    )
    gate.set()
    await running


@pytest.mark.parametrize(
    "refusal",
    [
        Unavailable("cannot connect to backend", not_sent=True),
        ResourceExhausted("backend is at capacity", not_sent=True),
    ],
)
async def test_a_failure_that_reached_no_model_server_is_retried_on_another_replica(
    refusal: Unavailable | ResourceExhausted,
) -> None:
    adapters = FakeAdapters(fail_on_host={"h1": refusal})
    relay = make_relay(FakeAgents(), adapters, two_hosts("primary", "backup"))
    _, final = await collect(relay, GenerationRequest(model="primary", prompt="hi"))
    assert (final.route.host, final.route.served_model) == ("h2", "primary")
    assert final.route.fallback_hops == ()
    assert adapters.calls == [("h1", "primary"), ("h2", "primary")]


async def test_a_failure_that_may_have_reached_the_model_server_is_not_retried_on_a_replica() -> (
    None
):
    # h1's backend accepted the stream and cut it before the first token: it may be
    # generating still, so the same model is not run again on h2. The fallback, a
    # model the operator chose for failures, still is.
    adapters = FakeAdapters(fail_on_host={"h1": Unavailable("cut before the first token")})
    view = two_hosts("primary")
    view.update(HostView("h2", reachable=True, servable=frozenset({"primary", "backup"})))
    relay = make_relay(FakeAgents(), adapters, view)
    _, final = await collect(relay, GenerationRequest(model="primary", prompt="hi"))
    assert final.route.served_model == "backup"
    assert [call for call in adapters.calls if call[1] == "primary"] == [("h1", "primary")], (
        "h2's primary replica got no request"
    )


async def test_without_a_fallback_a_possibly_sent_failure_is_the_answer() -> None:
    adapters = FakeAdapters(fail_on_host={"h1": ResourceExhausted("backend said busy mid-way")})
    relay = make_relay(FakeAgents(), adapters, two_hosts("backup"))
    with pytest.raises(ResourceExhausted, match="busy mid-way"):
        await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert adapters.calls == [("h1", "backup")]


async def test_not_sent_retries_stop_when_the_budget_is_spent() -> None:
    adapters = FakeAdapters(
        fail_on_host={h: Unavailable("refused", not_sent=True) for h in ("h1", "h2")}
    )
    relay = Relay(
        ModelRegistry([PRIMARY, BACKUP], AutoRouting()),
        two_hosts("backup"),
        FakeAgents(),
        adapters,
        RouterSettings(),
        RouterMetrics(CollectorRegistry()),
        retry_budget=RetryBudget(ratio=0.0, floor_per_second=0.0, cap=1.0),
    )
    for _ in range(3):
        with pytest.raises(Unavailable, match="refused"):
            await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert len(adapters.calls) == 4, "one retry from the budget, then none: 3 requests + 1 retry"


async def test_a_not_sent_failure_is_not_retried_past_the_deadline() -> None:
    adapters = FakeAdapters(fail_on_host={"h1": Unavailable("refused", not_sent=True)})
    relay = make_relay(FakeAgents(), adapters, two_hosts("backup"))
    with pytest.raises(Unavailable, match="refused"):
        async for _ in relay.generate(
            GenerationRequest(model="backup", prompt="hi"), timeout_seconds=0.5
        ):
            pass
    assert adapters.calls == [("h1", "backup")], "too little time was left for another try"


def with_warm_backup() -> ClusterView:
    view = ClusterView()
    view.update(
        HostView(
            "h1",
            reachable=True,
            servable=frozenset({"primary", "backup"}),
            replicas=(
                Replica(
                    model="backup",
                    host="h1",
                    state=ResidencyState.READY,
                    gpu_index=0,
                    gpu_uuid="SIM-0",
                    load_seconds=2.0,
                    endpoint=Endpoint("llama_cpp", "http://h1/backup", "backup"),
                ),
            ),
        )
    )
    return view


async def test_a_load_leaves_its_fallback_time_to_answer() -> None:
    agents = FakeAgents()
    timeouts: dict[str, float] = {}

    async def slow_primary(host: str, model: str, timeout_seconds: float, **_: object):
        timeouts[model] = timeout_seconds
        # The agent waits for room for as long as it is allowed to, then gives up.
        raise DeadlineExceeded(f"{model} still waiting for room after {timeout_seconds:.1f} s")

    agents.ensure_loaded = slow_primary  # type: ignore[method-assign]
    relay = make_relay(agents, FakeAdapters(), with_warm_backup())
    _text, final = await collect(relay, GenerationRequest(model="primary", prompt="hi"))
    assert timeouts["primary"] <= 30 - 5, "the warm fallback's share was kept back"
    assert final.route.served_model == "backup", "and it answered"
    (hop,) = final.route.fallback_hops
    assert "in time to leave its fallbacks" in hop.reason


async def test_without_fallbacks_a_load_may_use_the_whole_deadline() -> None:
    agents = FakeAgents()
    timeouts: list[float] = []
    real = agents.ensure_loaded

    async def recording(host: str, model: str, timeout_seconds: float, **kwargs: object):
        timeouts.append(timeout_seconds)
        return await real(host, model, timeout_seconds)

    agents.ensure_loaded = recording  # type: ignore[method-assign]
    await collect(
        make_relay(agents, FakeAdapters()), GenerationRequest(model="backup", prompt="hi")
    )
    assert timeouts and timeouts[0] > 29


def warm_cluster(model: str, base_url: str = "http://warm") -> ClusterView:
    """A cluster view showing `model` ready on h1 at `base_url`."""
    cluster = ClusterView()
    endpoint = Endpoint(GEMMA_BACKEND, base_url, model)
    cluster.update(
        HostView(
            "h1",
            reachable=True,
            servable=frozenset({"primary", "backup"}),
            replicas=(Replica(model, "h1", ResidencyState.READY, 0, "SIM-0", 2.0, endpoint),),
        )
    )
    return cluster


async def test_a_dead_server_behind_a_ready_replica_is_asked_of_its_agent_and_served() -> None:
    # The view still shows the replica ready; its server has died, and the agent
    # (asked once) starts a new one at another address.
    agents = FakeAgents()
    adapters = FakeAdapters(
        fail_on_url={"http://warm": Unavailable("cannot connect", backend_down=True)}
    )
    relay = make_relay(agents, adapters, warm_cluster("backup"))
    text, final = await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert text == "Hello world"
    # A cold start: the endpoint came from the agent, not from the view.
    assert final.route.served_model == "backup" and final.route.cold_start
    assert agents.verified == [("h1", "backup")], "asked to check the server it gave"
    assert adapters.calls == [("h1", "backup"), ("h1", "backup")]


async def test_a_server_still_down_after_asking_its_agent_is_not_asked_again() -> None:
    agents = FakeAgents()
    down = Unavailable("cannot connect", backend_down=True)
    adapters = FakeAdapters(fail_on_url={"http://warm": down, "http://h1/backup": down})
    relay = make_relay(agents, adapters, warm_cluster("backup"))
    with pytest.raises(Unavailable, match="cannot connect"):
        await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert len(adapters.calls) == 2, "the view's endpoint, then the agent's; no third try"


async def test_a_server_that_is_there_but_refuses_is_not_asked_of_its_agent() -> None:
    # 429/503: the server is alive, so its agent has nothing to restart.
    agents = FakeAgents()
    busy = Unavailable("backend is overloaded (HTTP 429)", not_sent=True)
    adapters = FakeAdapters(fail_on_url={"http://warm": busy})
    relay = make_relay(agents, adapters, warm_cluster("backup"))
    with pytest.raises(Unavailable, match="overloaded"):
        await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert len(adapters.calls) == 1


async def test_a_dead_server_with_another_replica_to_try_is_retried_there() -> None:
    cluster = warm_cluster("backup")
    cluster.update(HostView("h2", reachable=True, servable=frozenset({"primary", "backup"})))
    agents = FakeAgents()
    adapters = FakeAdapters(
        fail_on_url={"http://warm": Unavailable("cannot connect", backend_down=True)}
    )
    relay = make_relay(agents, adapters, cluster)
    _, final = await collect(relay, GenerationRequest(model="backup", prompt="hi"))
    assert final.route.host == "h2" and final.route.cold_start
    assert adapters.calls == [("h1", "backup"), ("h2", "backup")], "h1 is not tried again"
    assert agents.verified == [], "a plain load on h2: nothing there was found down"


async def test_the_fallback_graph_is_walked_to_its_end_and_route_shows_all_of_it() -> None:
    specs = [
        ModelSpec.model_validate({**GEMMA, "name": "huge", "aliases": [], "fallbacks": ["broken"]}),
        ModelSpec.model_validate(
            {**GEMMA, "name": "broken", "aliases": [], "fallbacks": ["gemma"]}
        ),
        ModelSpec.model_validate({**GEMMA, "name": "gemma", "aliases": []}),
    ]
    cluster = ClusterView()
    cluster.update(HostView("h1", reachable=True, servable=frozenset({"huge", "broken", "gemma"})))
    agents = FakeAgents(
        fail={"huge": Unavailable("fits no GPU"), "broken": Unavailable("could not load broken")}
    )
    relay = Relay(
        ModelRegistry(specs, AutoRouting()),
        cluster,
        agents,
        FakeAdapters(),
        RouterSettings(),
        RouterMetrics(CollectorRegistry()),
    )
    request = GenerationRequest(model="huge", prompt="hi")
    assert relay.decide(request).fallback_chain == ("broken", "gemma")
    _, final = await collect(relay, request)
    assert final.route.served_model == "gemma"
    assert [(h.from_model, h.to_model) for h in final.route.fallback_hops] == [
        ("huge", "broken"),
        ("broken", "gemma"),
    ]
    assert [model for _, model in agents.loads] == ["huge", "broken", "gemma"], "each once"
