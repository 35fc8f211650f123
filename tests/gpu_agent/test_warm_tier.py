"""The warm tier: models leaving their GPUs sleep in host RAM when that pays, and wake on
the next request; nothing but a request wakes them.

vLLM and SGLang do not run without a GPU here: their endpoints are exercised against a
STAND-IN written from their documentation (tests/fakes/sleepy_server.py), not the real
servers."""

from __future__ import annotations

import asyncio
from typing import cast

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.fakes.drivers import FakeDriver
from tests.fakes.sleep import FakePageCache, FakeServerSleep
from tests.fakes.sleepy_server import SleepyServer
from tests.gpu_agent.test_nvml import GB, inventory, two_gpus
from tests.gpu_agent.test_residency import MIB, Clock, agent_client, manager, spec
from warmpath.v1 import gpu_agent_pb2
from warmpath_agent.docker_container import create_arguments
from warmpath_agent.drivers import RunningModel
from warmpath_agent.inventory import GpuReading
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import ResidencyState
from warmpath_agent.server_probe import HttpServerProbe
from warmpath_agent.server_watch import ServerWatch
from warmpath_agent.servicer import GpuAgentServicer
from warmpath_agent.sleep_api import HttpServerSleep, sleep_mode_launch
from warmpath_agent.sleepers import WarmTier
from warmpath_agent.warm_tier import (
    Sleeper,
    SleepKind,
    choose_demotion,
    return_seconds,
    sleep_kind,
    sleepers_to_unload,
    sleeps_freely,
)
from warmpath_common.config import (
    BackendKindName,
    DockerSettings,
    ModelSpec,
    Runtime,
    ServerProbeSettings,
)
from warmpath_common.errors import ResourceExhausted
from warmpath_common.servicer_context import ServicerContext

GIB = 1024 * MIB


def vllm(name: str, memory_mib: int) -> ModelSpec:
    return spec(
        name,
        memory_mib,
        backend="vllm",
        source={"served_id": f"org/{name}"},
        container={"image": "vllm/vllm-openai:latest", "command": ["--model", f"org/{name}"]},
    )


def tier(
    servers: FakeServerSleep | HttpServerSleep | None = None,
    page_cache: FakePageCache | None = None,
) -> WarmTier:
    """A warm tier whose models a and b were measured waking in 1 ms: faster than the
    fake driver's loads, so sleeping pays."""
    wakes = {"a": 0.001, "b": 0.001}
    return WarmTier(servers or FakeServerSleep(), page_cache or FakePageCache(), 600.0, wakes)


def warm_manager(
    driver: FakeDriver, *specs: ModelSpec, clock: Clock, host_memory_mib: int = 4000, gpus: int = 1
) -> ResidencyManager:
    """GPUs of 1000 MiB, the warm tier on (`tier`), host RAM for sleepers."""
    return manager(
        driver, *specs, gpus=gpus, warm_tier=tier(), clock=clock, host_memory_mib=host_memory_mib
    )


def sleeper(model: str, gib: float, load: float, wake: float, demand: float) -> Sleeper:
    return Sleeper(model, int(gib * GIB), load, wake, demand)


# -- the rule (warm_tier.py) -------------------------------------------------------


def test_a_model_sleeps_when_waking_is_faster_and_host_ram_has_room() -> None:
    demotion = choose_demotion(sleeper("a", 4, 48, 2, 1), [], host_free_bytes=8 * GIB)
    assert demotion.sleep
    assert "saves 46.0 s" in demotion.reason


def test_a_model_whose_wake_is_no_faster_than_its_load_is_unloaded() -> None:
    assert not choose_demotion(sleeper("a", 4, 2, 2, 1), [], host_free_bytes=None).sleep


def test_short_host_ram_unloads_sleepers_worth_less_per_byte_to_make_room() -> None:
    asleep = [sleeper("cold", 4, 10, 2, 0.1), sleeper("warm", 4, 60, 1, 5)]
    demotion = choose_demotion(sleeper("new", 4, 48, 2, 1), asleep, host_free_bytes=1 * GIB)
    assert demotion.sleep
    assert demotion.unload_sleepers == ("cold",)


def test_a_model_worth_less_than_every_sleeper_is_unloaded_rather_than_evict_them() -> None:
    asleep = [sleeper("warm", 4, 60, 1, 5)]
    demotion = choose_demotion(sleeper("new", 4, 48, 2, 0.1), asleep, host_free_bytes=1 * GIB)
    assert not demotion.sleep
    assert "host RAM is short" in demotion.reason


def test_host_ram_pressure_unloads_the_least_valuable_sleepers_first() -> None:
    asleep = [
        sleeper("big-rare", 8, 60, 2, 0.1),
        sleeper("small-hot", 1, 30, 1, 10),
        sleeper("mid", 4, 30, 1, 1),
    ]
    assert sleepers_to_unload(asleep, 6 * GIB) == ("big-rare",)
    assert sleepers_to_unload(asleep, 11 * GIB) is not None
    assert sleepers_to_unload(asleep, 14 * GIB) is None
    assert sleepers_to_unload(asleep, 0) == ()


def test_evicting_a_model_that_would_push_sleepers_out_costs_what_they_lose() -> None:
    """Host RAM small: a model that sleeps only by unloading another sleeper is not cheap
    to evict. Priced at its wake alone, eviction churned host RAM and the tier loaded more
    from disk than no tier (bench/results/placement.md, 0.25x host RAM)."""
    leaving = sleeper("new", 4, 48, 2, 1)
    asleep = [sleeper("rare", 4, 30, 2, 0.5)]
    assert return_seconds(leaving, asleep, host_free_bytes=8 * GIB) == 2
    assert sleeps_freely(leaving, asleep, host_free_bytes=8 * GIB)
    # It would sleep in rare's place: rare's next request is a load (28 s saved lost, at
    # half new's demand), so new's return costs its wake plus 14 s.
    assert choose_demotion(leaving, asleep, host_free_bytes=1 * GIB).unload_sleepers == ("rare",)
    assert return_seconds(leaving, asleep, host_free_bytes=1 * GIB) == 2 + 14
    assert not sleeps_freely(leaving, asleep, host_free_bytes=1 * GIB)
    # Never more than its load; and its load when it would not sleep at all.
    busy = [sleeper("rare", 4, 30, 2, 5)]
    assert return_seconds(sleeper("new", 4, 48, 2, 0.5), busy, host_free_bytes=1 * GIB) == 48


def test_which_servers_can_sleep_and_how() -> None:
    assert sleep_kind(vllm("v", 100)) is SleepKind.SERVER
    assert sleep_kind(spec("g", 100)) is SleepKind.PAGE_CACHE
    ollama = spec("o", 100, backend="ollama", source={"served_id": "gemma3"}, chat_format=None)
    assert sleep_kind(ollama) is None


# -- the servers are started with what their sleep endpoints need -------------------


def test_vllm_and_sglang_containers_start_with_their_sleep_mode_when_the_tier_is_on() -> None:
    model = vllm("v", 100)
    assert model.container is not None
    gpu = GpuReading(0, "GPU-0", "H100", 80 * GIB, 0, 80 * GIB, simulated=False)
    on = create_arguments(DockerSettings(), "me", model, model.container, gpu, sleep_mode=True)
    assert on["command"] == ["--model", "org/v", "--enable-sleep-mode"]
    assert on["environment"]["VLLM_SERVER_DEV_MODE"] == "1"
    off = create_arguments(DockerSettings(), "me", model, model.container, gpu)
    assert off["command"] == ["--model", "org/v"]
    assert "VLLM_SERVER_DEV_MODE" not in off["environment"]
    assert sleep_mode_launch(BackendKindName.SGLANG)[0] == ("--enable-memory-saver",)
    assert sleep_mode_launch(BackendKindName.LLAMA_CPP) == ((), {})


# -- the agent (residency.py with sleepers.py) ----------------------------------------


async def test_an_evicted_vllm_model_sleeps_and_the_next_request_wakes_it() -> None:
    driver = FakeDriver(load_seconds=0.05)
    servers = FakeServerSleep()
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    agent = manager(
        driver,
        vllm("a", 600),
        vllm("b", 600),
        warm_tier=tier(servers),
        host_memory_mib=4000,
        metrics=metrics,
    )
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")  # evicts a: one GPU of 1000 MiB
    models = {r.model: r for r in (await agent.state()).models}
    assert models["a"].state is ResidencyState.ASLEEP
    assert models["a"].asleep_bytes == 600 * MIB
    assert servers.sleeps == ["a"]
    assert driver.stops == [], "a sleeping server keeps running"

    outcome = await agent.ensure_loaded("a")  # evicts b in turn: it sleeps too
    assert outcome.cold_start
    assert outcome.woken
    assert servers.wakes == ["a"]
    assert driver.starts == ["a", "b"], "a wake starts no server"
    assert outcome.residency.wake_seconds >= 0
    assert {r.model: r.state for r in (await agent.state()).models} == {
        "a": ResidencyState.READY,
        "b": ResidencyState.ASLEEP,
    }
    sleeps = {"model": "a", "kind": "server"}
    assert registry.get_sample_value("warmpath_agent_sleeps_total", sleeps) == 1
    wakes = {"model": "a", "outcome": "ok"}
    assert registry.get_sample_value("warmpath_agent_wakes_total", wakes) == 1
    assert registry.get_sample_value("warmpath_agent_wake_seconds_count", {"model": "a"}) == 1


async def test_a_llama_cpp_model_sleeps_in_the_page_cache_and_its_reload_is_the_wake() -> None:
    driver = FakeDriver(load_seconds=0.05)
    cache = FakePageCache()
    agent = manager(driver, spec("a", 600), spec("b", 600), warm_tier=tier(page_cache=cache))
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    asleep = {r.model: r for r in (await agent.state()).models}["a"]
    assert asleep.state is ResidencyState.ASLEEP
    assert asleep.running is None
    assert driver.stops == ["a"]
    assert cache.kept == ["a"]

    outcome = await agent.ensure_loaded("a")
    assert outcome.woken
    assert driver.starts == ["a", "b", "a"], "the page cache's wake is a reload"


async def test_a_failed_wake_unloads_the_sleeper_and_loads_the_model_from_disk() -> None:
    driver = FakeDriver(load_seconds=0.05)
    servers = FakeServerSleep(fail_wakes={"a"})
    agent = manager(driver, vllm("a", 600), vllm("b", 600), warm_tier=tier(servers))
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    outcome = await agent.ensure_loaded("a")
    assert not outcome.woken
    assert outcome.residency.state is ResidencyState.READY
    assert driver.stops[0] == "a", "the server that would not wake was stopped"
    assert driver.starts.count("a") == 2


async def test_short_host_ram_unloads_instead_of_sleeping() -> None:
    driver = FakeDriver(load_seconds=0.05)
    servers = FakeServerSleep()
    agent = manager(
        driver, vllm("a", 600), vllm("b", 600), warm_tier=tier(servers), host_memory_mib=100
    )
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    assert [r.model for r in (await agent.state()).models] == ["b"]
    assert servers.sleeps == []
    assert driver.stops == ["a"]


async def test_keep_alive_puts_to_sleep_and_the_warm_tiers_keep_alive_unloads() -> None:
    clock = Clock()
    driver = FakeDriver(load_seconds=0.05)
    agent = manager(driver, vllm("a", 600), warm_tier=tier(), clock=clock)
    await agent.ensure_loaded("a")
    clock.now += 601  # past the default keep_alive_seconds of 600
    await agent.expire_idle()
    assert (await agent.state()).models[0].state is ResidencyState.ASLEEP
    clock.now += 600 + 601  # past keep-alive plus the tier's 600 s asleep
    await agent.expire_idle()
    assert (await agent.state()).models == ()
    assert driver.stops == ["a"]


async def test_eviction_counts_on_the_room_a_server_put_to_sleep_frees_not_all_of_it() -> None:
    driver = FakeDriver(load_seconds=0.05)
    agent = manager(driver, vllm("a", 500), vllm("b", 500), vllm("x", 500), warm_tier=tier())
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    # Evicting a alone frees 450 MiB (its server keeps 50 asleep): x needs b gone too.
    outcome = await agent.ensure_loaded("x")
    assert sorted(outcome.evicted) == ["a", "b"]
    state = await agent.state()
    assert state.gpus[0].memory_used_bytes == (500 + 50 + 50) * MIB


async def test_a_sleeping_servers_leftover_gpu_memory_counts_until_it_is_unloaded() -> None:
    """Asleep, a vLLM server keeps its CUDA context and the like on its GPU. On a
    simulated inventory that is the estimate from vLLM's documentation (a tenth)."""
    clock = Clock()
    driver = FakeDriver(load_seconds=0.05)
    agent = warm_manager(driver, vllm("a", 600), clock=clock)
    await agent.ensure_loaded("a")
    clock.now += 601  # past its keep-alive: it sleeps
    await agent.expire_idle()
    state = await agent.state()
    assert state.models[0].state is ResidencyState.ASLEEP
    assert state.models[0].asleep_gpu_bytes == 60 * MIB
    assert state.gpus[0].memory_used_bytes == 60 * MIB, "still counted against its GPU"
    clock.now += 600 + 601  # past the tier's keep-alive too: unloaded
    await agent.expire_idle()
    state = await agent.state()
    assert state.models == ()
    assert state.gpus[0].memory_used_bytes == 0, "freed with the server"


async def test_a_model_that_needs_a_sleepers_leftover_gpu_memory_unloads_the_sleeper() -> None:
    clock = Clock()
    driver = FakeDriver(load_seconds=0.05)
    agent = warm_manager(driver, vllm("a", 600), vllm("c", 1000), clock=clock)
    await agent.ensure_loaded("a")
    clock.now += 601  # past its keep-alive: it sleeps, keeping 60 MiB on the GPU
    await agent.expire_idle()
    assert agent.is_asleep("a")
    outcome = await agent.ensure_loaded("c")  # needs the whole GPU
    assert outcome.evicted == ("a",)
    assert driver.stops == ["a"], "unloaded from its sleep, not left holding the GPU"
    state = await agent.state()
    assert [r.model for r in state.models] == ["c"]
    assert state.gpus[0].memory_used_bytes == 1000 * MIB


async def test_a_sleeper_evicted_for_its_leftover_is_not_counted_as_going_to_sleep() -> None:
    """Waiting for room beats evicting a hot-set model unless every victim would only
    sleep; a sleeper evicted for what it keeps on the GPU is unloaded, not put to sleep."""
    clock = Clock()
    agent = warm_manager(FakeDriver(load_seconds=0.05), vllm("a", 600), vllm("b", 600), clock=clock)
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    hooks = agent._warm_hooks  # the rule itself, without staging a wait
    now = clock()
    awake = hooks.as_victim(agent._core.residents["b"], now, 600 * MIB)
    assert hooks.victims_sleep([awake], host_free=4000 * MIB), "b would sleep, not unload"
    clock.now += 601
    await agent.expire_idle()
    assert agent.is_asleep("a")
    asleep = hooks.as_victim(agent._core.residents["a"], clock(), 60 * MIB)
    assert not hooks.victims_sleep([asleep], host_free=4000 * MIB)


async def test_a_wake_never_evicts_what_the_sleeper_itself_keeps_on_the_gpu() -> None:
    clock = Clock()
    driver = FakeDriver(load_seconds=0.05)
    agent = warm_manager(driver, vllm("a", 600), vllm("b", 450), clock=clock)
    await agent.ensure_loaded("a")
    clock.now += 601  # a sleeps, keeping 60 MiB
    await agent.expire_idle()
    for _ in range(20):  # b in demand: a's 60 MiB would look the cheaper victim
        await agent.ensure_loaded("b")
    # Waking a needs 540 MiB more; 490 are free. Its own 60 would do, but they are its.
    outcome = await agent.ensure_loaded("a")
    assert outcome.woken
    assert outcome.evicted == ("b",)


async def test_on_a_real_gpu_a_sleeping_servers_leftover_is_what_nvml_reads_of_it() -> None:
    running = RunningModel("a", "http://127.0.0.1:1", "org/a", pid=4242)
    nvml = inventory(two_gpus())  # NVML lists pid 4242 holding 9 GB on GPU 0
    assert await tier().held_on_gpus(running, {0: 20 * GB}, nvml) == {0: 9 * GB}
    unseen = RunningModel("a", "http://127.0.0.1:1", "org/a", pid=1)
    assert await tier().held_on_gpus(unseen, {0: 20 * GB}, nvml) == {0: 2 * GB}, "estimated"


async def test_an_operator_puts_a_model_to_sleep_and_its_next_request_wakes_it() -> None:
    driver = FakeDriver(load_seconds=0.05)
    servers = FakeServerSleep()
    # Its wake measured slower than its load: the agent would not choose to sleep it.
    slow_wake = WarmTier(servers, FakePageCache(), 600.0, {"a": 60.0})
    agent = manager(driver, vllm("a", 600), warm_tier=slow_wake, host_memory_mib=4000)
    await agent.ensure_loaded("a")
    assert await agent.unload("a", force=False, sleep=True)
    assert agent.is_asleep("a")
    assert servers.sleeps == ["a"]
    assert driver.stops == []
    assert (await agent.ensure_loaded("a")).woken

    without_tier = manager(FakeDriver(load_seconds=0.05), vllm("a", 600))
    await without_tier.ensure_loaded("a")
    assert await without_tier.unload("a", force=False, sleep=True)
    assert not without_tier.is_asleep("a")
    assert (await without_tier.state()).models == (), "unloaded instead"


async def test_leased_and_pinned_models_neither_sleep_nor_unload() -> None:
    driver = FakeDriver(load_seconds=0.05)
    servers = FakeServerSleep()
    agent = manager(driver, vllm("a", 600), vllm("b", 600), warm_tier=tier(servers))
    await agent.ensure_loaded("a", lease_seconds=60)
    with pytest.raises(ResourceExhausted, match="needs 600 MiB"):
        await agent.ensure_loaded("b")
    assert servers.sleeps == []


# -- health probes and state streams never wake a model (stand-in server) ------------


async def test_no_probe_check_or_state_stream_wakes_a_sleeping_server() -> None:
    with SleepyServer("org/a") as server:
        async with httpx.AsyncClient() as client:
            driver = FakeDriver(load_seconds=0.05, base_url=server.url)
            warm = tier(HttpServerSleep(client, 10.0))
            agent = manager(driver, vllm("a", 600), vllm("b", 600), warm_tier=warm)
            await agent.ensure_loaded("a")
            await agent.ensure_loaded("b")  # a sleeps through the stand-in's /sleep?level=1
            assert server.asleep
            assert server.calls["POST /sleep"] == 1

            watch = ServerWatch(agent, HttpServerProbe(client), ServerProbeSettings())
            probes_before = server.calls["GET /health"]
            for _ in range(3):
                await watch.probe_all()
            backends = {"a": BackendKindName.VLLM, "b": BackendKindName.VLLM}
            servicer = GpuAgentServicer(agent, backends, heartbeat_seconds=0.01)
            stream = servicer.WatchState(
                gpu_agent_pb2.WatchStateRequest(), cast(ServicerContext, None)
            )
            events = [await anext(stream) for _ in range(3)]
            await stream.aclose()
            async with agent_client(agent, backends) as router_side:
                state = await router_side.state("h", 5.0)
            await agent.ensure_loaded("b", verify=True)

            (asleep,) = [m for m in state.models if m.model == "a"]
            assert asleep.state == gpu_agent_pb2.RESIDENCY_STATE_ASLEEP
            assert not asleep.HasField("endpoint"), "a sleeping server's address is not given"
            assert asleep.asleep_gpu_memory_bytes == 60 * MIB, "what it keeps on its GPU"
            assert events[0].state.models[0].state == gpu_agent_pb2.RESIDENCY_STATE_ASLEEP
            assert server.wakes == 0, "no probe, check or state stream woke it"
            assert server.calls["GET /health"] == probes_before + 3, "only b was probed"
            assert server.asleep

            async with agent_client(agent, backends) as router_side:
                load = await router_side.ensure_loaded("h", "a", 5.0)
            assert load.woken, "EnsureLoaded says the model was woken"
            assert load.cold_start
            assert server.wakes == 1
            assert not server.asleep
            answer = await client.post(
                f"{server.url}/v1/chat/completions",
                json={"model": "org/a", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.status_code == 200


async def test_a_model_outside_the_hot_set_evicts_a_hot_one_that_would_sleep_at_once() -> None:
    """Without the tier it would wait for the model outside the hot set to finish its
    requests, rather than evict the hot one; with it, the hot one sleeps and comes back
    in a wake, so waiting buys little."""
    clock = Clock()
    driver = FakeDriver(load_seconds=0.05)
    servers = FakeServerSleep()
    models = (vllm("a", 500), vllm("b", 500), vllm("x", 500))
    warm = tier(servers)
    warm.timed_wakes["x"] = 0.001
    # Room for a and b, and for x once a sleeps, keeping 50 MiB on the GPU.
    agent = manager(driver, *models, gpu_mib=1100, clock=clock, warm_tier=warm)
    for _ in range(10):  # a request every 10 s: hot
        await agent.ensure_loaded("a")
        clock.now += 10
    await agent.ensure_loaded("b", lease_seconds=60)  # outside the hot set, and busy
    clock.now += 1
    # Without the rule it would wait most of its 300 s deadline for b to come free.
    async with asyncio.timeout(60):
        outcome = await agent.ensure_loaded("x", deadline_seconds=300)
    assert outcome.evicted == ("a",)
    assert servers.sleeps == ["a"]
    assert {r.model: r.state for r in (await agent.state()).models} == {
        "a": ResidencyState.ASLEEP,
        "b": ResidencyState.READY,
        "x": ResidencyState.READY,
    }


async def test_a_server_found_asleep_at_start_is_adopted_asleep_and_woken_on_request() -> None:
    with SleepyServer("org/a") as server:
        server.asleep = True  # a previous agent put it to sleep
        async with httpx.AsyncClient() as client:
            driver = FakeDriver(load_seconds=0.05)
            agent = manager(driver, vllm("a", 600), warm_tier=tier(HttpServerSleep(client, 10.0)))
            gpu = (await agent.state()).gpus[0]
            running = RunningModel("a", server.url, "org/a", pid=None, runtime=Runtime.DOCKER)
            assert await agent.adopt([(running, gpu.uuid)]) == ["a"]
            (adopted,) = (await agent.state()).models
            assert adopted.state is ResidencyState.ASLEEP
            assert adopted.asleep_bytes == 600 * MIB
            assert server.wakes == 0, "asking whether it sleeps does not wake it"

            outcome = await agent.ensure_loaded("a")
            assert outcome.woken
            assert server.wakes == 1
            assert driver.starts == [], "woken, not started again"
