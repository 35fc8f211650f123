"""A sleeping server wakes only on its own GPUs. When room there comes only once a load in
progress has finished, and a load from disk elsewhere is sooner than that wait and the
wake, the sleeper is unloaded and the model loaded elsewhere (warm_tier.py,
docs/warm-tier.md). vLLM does not run here: the fake driver and sleep endpoints stand in."""

from __future__ import annotations

import asyncio
import math

from tests.conftest import eventually
from tests.fakes.drivers import FakeDriver
from tests.gpu_agent.test_residency import MIB, Clock
from tests.gpu_agent.test_warm_tier import vllm, warm_manager
from warmpath_agent.eviction import GpuRoom, ResidentModel
from warmpath_agent.residents import ResidencyState
from warmpath_agent.warm_tier import moves_rather_than_waits, room_in_seconds


def resident(model: str, mib: int, since: float, *, in_use: bool = False) -> ResidentModel:
    return ResidentModel(model, mib * MIB, 10.0, 1.0, 0.0, since, in_use=in_use)


def test_room_comes_when_a_load_in_progress_there_is_ready_and_past_min_residency() -> None:
    now = 100.0
    loading = resident("big", 900, since=now + 60, in_use=True)  # ready in a minute
    busy = resident("busy", 300, since=0.0, in_use=True)  # requests in flight: seconds
    room = GpuRoom(0, 40 * MIB, (loading, busy))
    assert room_in_seconds(room, 300 * MIB, now, 10.0) == 0.0, "the busy one will do"
    assert room_in_seconds(room, 540 * MIB, now, 10.0) == 70.0, "the load, then its residency"
    pinned = ResidentModel("p", 900 * MIB, 10.0, 1.0, 0.0, 0.0, pinned=True)
    assert room_in_seconds(GpuRoom(0, 0, (pinned,)), 540 * MIB, now, 10.0) == math.inf
    assert room_in_seconds(GpuRoom(0, 600 * MIB, ()), 540 * MIB, now, 10.0) == 0.0


def test_a_sleeper_moves_only_when_a_load_elsewhere_is_sooner_than_the_wait_and_its_wake() -> None:
    assert moves_rather_than_waits(room_in=70.0, wake_seconds=2.0, load_seconds=40.0)
    assert not moves_rather_than_waits(room_in=5.0, wake_seconds=2.0, load_seconds=40.0)
    assert not moves_rather_than_waits(room_in=0.0, wake_seconds=2.0, load_seconds=40.0)


async def test_a_wake_blocked_by_a_load_in_progress_on_its_gpu_loads_elsewhere_instead() -> None:
    clock = Clock()
    driver = FakeDriver(load_seconds=0.01)
    agent = warm_manager(
        driver, vllm("a", 600), vllm("f", 500), vllm("big", 900), clock=clock, gpus=2
    )
    await agent.ensure_loaded("a")  # GPU 0
    assert await agent.unload("a", force=False, sleep=True)  # keeps 60 MiB on GPU 0
    await agent.ensure_loaded("f")  # GPU 1, the emptier
    driver.release = asyncio.Event()  # big's load stays in progress on GPU 0
    big = asyncio.create_task(agent.ensure_loaded("big"))

    async def big_started() -> bool:
        return driver.starts == ["a", "f", "big"]

    await eventually(big_started)
    opened, driver.release = driver.release, None
    try:
        # Waking a needs 540 MiB of GPU 0, held by big until its load (about 7 s, never
        # timed here) is done; a's load from disk took a fraction of a second.
        outcome = await agent.ensure_loaded("a")
        assert outcome.cold_start
        assert not outcome.woken, "loaded from disk, not woken"
        assert outcome.evicted == ("f",)
        assert driver.stops[0] == "a", "its sleeping server was unloaded first"
        assert outcome.residency.state is ResidencyState.READY
        assert outcome.residency.gpu_index == 1
    finally:
        opened.set()
        await big


async def test_a_sleepers_leftover_is_kept_like_the_hot_set() -> None:
    """Unloading a sleeper for the tenth of its GPU it keeps costs its next request a load:
    a hot-set model that would only sleep (a wake) goes first."""
    clock = Clock()
    driver = FakeDriver(load_seconds=0.01)
    agent = warm_manager(driver, vllm("a", 600), vllm("b", 300), vllm("x", 660), clock=clock)
    await agent.ensure_loaded("a")
    agent._core.timed_loads["a"] = 60.0  # a slow load: its wake saves a minute
    assert await agent.unload("a", force=False, sleep=True)  # keeps 60 MiB
    clock.now += 6000  # a is seldom asked for: outside the hot set
    for _ in range(20):  # b is asked for every minute: the hot set
        await agent.ensure_loaded("b")
        clock.now += 60
    # x needs 20 MiB more than is free: a's leftover would do.
    outcome = await agent.ensure_loaded("x")
    assert outcome.evicted == ("b",), "b sleeps (a wake) rather than a lose its sleep (a load)"
    assert agent.is_asleep("a")
    assert agent.is_asleep("b")


async def test_a_sleeper_that_an_earlier_victims_sleep_pushed_out_is_not_evicted_again() -> None:
    """Both evicted for x: a goes to sleep first (it was used first), and its sleep
    unloads b from host RAM; b, a victim for its leftover too, is gone already."""
    clock = Clock()
    driver = FakeDriver(load_seconds=0.01)
    agent = warm_manager(
        driver, vllm("a", 300), vllm("b", 600), vllm("x", 940), clock=clock, host_memory_mib=700
    )
    await agent.ensure_loaded("a")
    clock.now += 10
    await agent.ensure_loaded("b")
    assert await agent.unload("b", force=False, sleep=True)  # keeps 60 MiB; 600 of host RAM
    # x needs 300 MiB more than is free: a (270 once asleep) and b's leftover (60).
    outcome = await agent.ensure_loaded("x")
    assert set(outcome.evicted) == {"a", "b"}
    assert agent.is_asleep("a")
    assert not agent.is_asleep("b")
    assert driver.stops == ["b"]


async def test_a_model_that_needs_a_whole_gpu_unloads_victims_that_would_have_slept() -> None:
    """Each victim that would sleep keeps a tenth of its memory on the GPU, so a model
    needing all of it fits only if they are unloaded: they are, rather than it refused."""
    clock = Clock()
    driver = FakeDriver(load_seconds=0.05)
    agent = warm_manager(driver, vllm("a", 600), vllm("b", 400), vllm("c", 1000), clock=clock)
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    clock.now += 601  # past min residency, both idle: either would sleep if evicted
    outcome = await agent.ensure_loaded("c")
    assert set(outcome.evicted) == {"a", "b"}
    assert sorted(driver.stops) == ["a", "b"], "unloaded, not asleep"
    assert not agent.is_asleep("a") and not agent.is_asleep("b")
    state = await agent.state()
    assert state.gpus[0].memory_used_bytes == 1000 * MIB
