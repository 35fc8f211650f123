from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA
from tests.fakes.drivers import FakeDriver
from tests.fakes.nvml import FakeGpu, FakeNvml
from warmpath.v1 import gpu_agent_pb2_grpc
from warmpath_agent.__main__ import gpu_health_name, observe_gpus
from warmpath_agent.drivers import ModelDriver
from warmpath_agent.eviction import estimated_load_seconds
from warmpath_agent.host_memory import DeclaredHostMemory
from warmpath_agent.inventory import MemoryBook
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.nvml import NvmlInventory
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import ResidencyState
from warmpath_agent.servicer import GpuAgentServicer
from warmpath_agent.simulated_inventory import SimulatedInventory
from warmpath_agent.sleepers import WarmTier
from warmpath_common.config import BackendKindName, HostSpec, ModelSpec, SimulatedGpu
from warmpath_common.errors import (
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    ResourceExhausted,
    Unavailable,
)
from warmpath_common.grpc_server import create_server
from warmpath_router.clients import AgentClient, HostChannels

MIB = 1024 * 1024
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def spec(name: str, memory_mib: int, **extra: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {**GEMMA, "name": name, "aliases": [], "memory": memory_mib * MIB, **extra}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(
    driver: ModelDriver,
    *specs: ModelSpec,
    gpu_mib: int = 1000,
    gpus: int = 1,
    clock: Callable[[], float] | None = None,
    min_residency_seconds: float = 0.0,
    metrics: AgentMetrics | None = None,
    warm_tier: WarmTier | None = None,
    host_memory_mib: int | None = None,
) -> ResidencyManager:
    book = MemoryBook()
    host_memory = (
        None if host_memory_mib is None else DeclaredHostMemory(host_memory_mib * MIB, book)
    )
    return ResidencyManager(
        "host-a",
        {s.name: s for s in specs},
        SimulatedInventory(tuple(SimulatedGpu(memory=gpu_mib * MIB) for _ in range(gpus)), book),
        driver,
        book=book,
        estimate_bytes=lambda s: int(s.memory or 0),
        metrics=metrics or AgentMetrics(CollectorRegistry()),
        min_residency_seconds=min_residency_seconds,
        clock=clock or Clock(),
        warm_tier=warm_tier,
        host_memory=host_memory,
    )


async def test_concurrent_ensure_loaded_share_one_load() -> None:
    driver = FakeDriver(load_seconds=0.05)
    agent = manager(driver, spec("a", 100))
    outcomes = await asyncio.gather(*(agent.ensure_loaded("a") for _ in range(10)))
    assert driver.starts == ["a"]
    assert all(o.cold_start and o.residency.state is ResidencyState.READY for o in outcomes)
    warm = await agent.ensure_loaded("a")
    assert not warm.cold_start and driver.starts == ["a"]


async def test_a_cancelled_caller_does_not_abort_the_load() -> None:
    driver = FakeDriver(release=asyncio.Event())
    agent = manager(driver, spec("a", 100))
    impatient = asyncio.create_task(agent.ensure_loaded("a"))
    patient = asyncio.create_task(agent.ensure_loaded("a"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    driver.release.set()  # type: ignore[union-attr]
    outcome = await patient
    assert outcome.residency.state is ResidencyState.READY
    assert driver.starts == ["a"]


async def test_a_slow_load_does_not_block_other_models() -> None:
    gate = asyncio.Event()
    driver = FakeDriver()
    agent = manager(driver, spec("slow", 100), spec("fast", 100))
    driver.release = gate
    slow = asyncio.create_task(agent.ensure_loaded("slow"))
    await asyncio.sleep(0.01)
    driver.release = None
    fast = await asyncio.wait_for(agent.ensure_loaded("fast"), 10.0)
    assert fast.residency.state is ResidencyState.READY
    gate.set()
    await slow


async def test_eviction_is_least_recently_used_and_never_pinned() -> None:
    clock = Clock()
    driver = FakeDriver()
    agent = manager(
        driver,
        spec("pinned", 400, pinned=True),
        spec("old", 300),
        spec("recent", 300),
        spec("new", 300),
        clock=clock,
    )
    for name in ("pinned", "old", "recent"):
        await agent.ensure_loaded(name)
        clock.now += 10
    await agent.ensure_loaded("recent")  # touched: now the most recently used
    outcome = await agent.ensure_loaded("new")
    assert outcome.evicted == ("old",)
    resident = {r.model for r in (await agent.state()).models}
    assert resident == {"pinned", "recent", "new"}


async def test_no_room_is_resource_exhausted_with_the_figures() -> None:
    agent = manager(FakeDriver(), spec("pinned", 800, pinned=True), spec("big", 500))
    await agent.ensure_loaded("pinned")
    with pytest.raises(ResourceExhausted) as caught:
        await agent.ensure_loaded("big")
    assert "needs 500 MiB" in caught.value.message
    assert "200 MiB free and 0 MiB freeable" in caught.value.message
    assert "waiting cannot help" in caught.value.message


async def test_failed_load_is_reported_and_retried_next_time() -> None:
    driver = FakeDriver(fail_models={"a"})
    agent = manager(driver, spec("a", 100))
    with pytest.raises(Unavailable, match="refused to start"):
        await agent.ensure_loaded("a")
    (failed,) = (await agent.state()).models
    assert failed.state is ResidencyState.FAILED and "refused" in failed.failure_reason
    assert (await agent.state()).gpus[0].memory_used_bytes == 0
    driver.fail_models.clear()
    assert (await agent.ensure_loaded("a")).residency.state is ResidencyState.READY


async def test_a_crash_marks_the_model_failed_and_frees_memory() -> None:
    driver = FakeDriver()
    agent = manager(driver, spec("a", 100))
    await agent.ensure_loaded("a")
    driver.crash("a")
    for _ in range(100):
        state = await agent.state()
        if state.models and state.models[0].state is ResidencyState.FAILED:
            break
        await asyncio.sleep(0.01)
    assert state.models[0].state is ResidencyState.FAILED
    assert state.gpus[0].memory_used_bytes == 0


async def test_a_caller_that_found_the_server_down_has_it_checked_and_loaded_again() -> None:
    driver = FakeDriver()
    agent = manager(driver, spec("a", 100))
    await agent.ensure_loaded("a")
    driver.die_unseen("a")
    # Without verify the agent's state is taken as it is: no check, no load.
    assert not (await agent.ensure_loaded("a")).cold_start
    assert driver.checks == []
    outcome = await agent.ensure_loaded("a", verify=True)
    assert outcome.cold_start and outcome.residency.state is ResidencyState.READY
    assert driver.checks == ["a"] and driver.starts == ["a", "a"]
    _, events = await agent.feed.wait_after(0, timeout=0)
    assert any("a failed: died (injected)" in event for event in events), events


@contextlib.asynccontextmanager
async def agent_client(
    agent: ResidencyManager, backends: dict[str, BackendKindName] | None = None
) -> AsyncIterator[AgentClient]:
    """The router's client to `agent`, served over a real gRPC hop as host "h"."""
    server = await create_server(
        "127.0.0.1:0",
        lambda grpc_server: gpu_agent_pb2_grpc.add_GpuAgentServicer_to_server(
            GpuAgentServicer(agent, backends or {"a": BackendKindName.LLAMA_CPP}, 1.0),
            grpc_server,
        ),
        ["warmpath.v1.GpuAgent"],
    )
    address = f"127.0.0.1:{server.port}"
    channels = HostChannels((HostSpec(name="h", agent=address, adapter=address),))
    try:
        yield AgentClient(channels)
    finally:
        await channels.close()
        await server.server.stop(0)


async def test_verify_crosses_the_hop_from_the_routers_client_to_the_agent() -> None:
    driver = FakeDriver()
    agent = manager(driver, spec("a", 100))
    async with agent_client(agent) as client:
        assert (await client.ensure_loaded("h", "a", 10)).cold_start
        driver.die_unseen("a")
        assert not (await client.ensure_loaded("h", "a", 10)).cold_start
        assert (await client.ensure_loaded("h", "a", 10, verify=True)).cold_start
        assert driver.starts == ["a", "a"]


async def test_a_failed_load_tells_the_caller_what_failed_where_without_host_paths() -> None:
    agent = manager(FakeDriver(fail_models={"a"}), spec("a", 100))
    async with agent_client(agent) as client:
        with pytest.raises(Unavailable) as caught:
            await client.ensure_loaded("h", "a", 10)
    assert caught.value.message == "could not load a on host-a: a refused to start (injected)"
    (failed,) = (await agent.state()).models
    assert "/var/log/agent/a.log" in failed.failure_reason, "the agent's state keeps it"


async def test_verify_leaves_a_live_server_alone() -> None:
    driver = FakeDriver()
    agent = manager(driver, spec("a", 100))
    await agent.ensure_loaded("a")
    outcome = await agent.ensure_loaded("a", verify=True)
    assert not outcome.cold_start
    assert driver.checks == ["a"] and driver.starts == ["a"]


async def test_unload_refuses_pinned_unless_forced_and_unknown_models() -> None:
    agent = manager(FakeDriver(), spec("p", 100, pinned=True))
    await agent.load_pinned()
    with pytest.raises(FailedPrecondition, match="pinned"):
        await agent.unload("p", force=False)
    assert await agent.unload("p", force=True)
    assert not await agent.unload("p", force=False)
    with pytest.raises(ModelNotFound, match="serves: p"):
        await agent.ensure_loaded("other")


async def test_keep_alive_expires_idle_models_only() -> None:
    clock = Clock()
    agent = manager(
        FakeDriver(), spec("a", 100, keep_alive_seconds=60), spec("b", 100), clock=clock
    )
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    clock.now += 61
    await agent.expire_idle()
    assert [r.model for r in (await agent.state()).models] == ["b"]


async def test_each_unload_is_counted_with_its_reason() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    agent = manager(
        FakeDriver(),
        spec("idle", 400, keep_alive_seconds=60),
        spec("asked", 400),
        spec("old", 400),
        spec("new", 400),
        clock=clock,
        metrics=AgentMetrics(registry),
    )
    for name in ("idle", "asked"):
        await agent.ensure_loaded(name)
    clock.now += 61
    await agent.expire_idle()
    await agent.unload("asked", force=False)
    await agent.ensure_loaded("old")
    clock.now += 10
    await agent.ensure_loaded("new")
    await agent.ensure_loaded("idle")  # evicts "old", the least recently used

    def unloads(model: str, reason: str) -> float | None:
        labels = {"model": model, "reason": reason}
        return registry.get_sample_value("warmpath_agent_unloads_total", labels)

    assert unloads("idle", "keep_alive") == 1
    assert unloads("asked", "request") == 1
    assert unloads("old", "evicted") == 1
    assert unloads("new", "evicted") is None


async def test_simulated_state_is_labelled_and_counts_booked_memory() -> None:
    agent = manager(FakeDriver(), spec("a", 250))
    await agent.ensure_loaded("a")
    state = await agent.state()
    assert state.simulated
    assert state.gpus[0].uuid.startswith("SIM-")
    assert state.gpus[0].memory_used_bytes == 250 * MIB


def one_gpu(processes: list[tuple[int, int | None]]) -> FakeNvml:
    """NVML's stand-in with one GPU, on which `processes` (pid, bytes) hold memory."""
    return FakeNvml([FakeGpu("GPU-aaa", "NVIDIA H100", 80 * 1024 * MIB, 0, processes)])


def live_manager(
    nvml: FakeNvml,
    driver: FakeDriver,
    *specs: ModelSpec,
    clock: Callable[[], float] = time.monotonic,
) -> ResidencyManager:
    """An agent on a live inventory: NVML's, read from `nvml`."""
    return ResidencyManager(
        "host-a",
        {s.name: s for s in specs},
        NvmlInventory(cast(ModuleType, nvml), clock=clock),
        driver,
        book=MemoryBook(),
        estimate_bytes=lambda s: int(s.memory or 0),
        metrics=AgentMetrics(CollectorRegistry()),
    )


async def test_on_real_gpus_the_measured_footprint_replaces_the_estimate(
    server_and_worker: tuple[int, int],
) -> None:
    server, worker = server_and_worker
    # A live inventory (NVML's, read from a stand-in), where the server's worker holds
    # the model's memory, as vLLM's engine core does.
    agent = live_manager(one_gpu([(worker, 700 * MIB)]), FakeDriver(pid=server), spec("a", 1000))
    first = (await agent.ensure_loaded("a")).residency
    assert (first.estimated_bytes, first.measured_bytes) == (1000 * MIB, 700 * MIB)
    (reported,) = (await agent.state()).models
    assert (reported.estimated_bytes, reported.measured_bytes) == (1000 * MIB, 700 * MIB)

    assert await agent.unload("a", force=False)
    again = (await agent.ensure_loaded("a")).residency
    assert again.estimated_bytes == 700 * MIB, "the next placement plans with what was measured"


async def test_a_server_nvml_does_not_list_keeps_its_estimate_and_the_log_says_why(
    server_and_worker: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = server_and_worker
    # As in a container with its own PID namespace: NVML lists a host pid it cannot see.
    agent = live_manager(one_gpu([(4_000_000, 700 * MIB)]), FakeDriver(pid=server), spec("a", 1000))
    loaded = (await agent.ensure_loaded("a")).residency
    assert (loaded.estimated_bytes, loaded.measured_bytes) == (1000 * MIB, 0)
    assert f"NVML lists no process of its server (pid {server})" in caplog.text
    assert "pid: host" in caplog.text and "hostPID: true" in caplog.text


async def test_a_gpu_turning_unhealthy_and_back_is_on_the_feed_and_in_grpc_health() -> None:
    clock = Clock()
    nvml = FakeNvml(
        [
            FakeGpu("GPU-aaa", "NVIDIA H100", 80 * 1024 * MIB, 0),
            FakeGpu("GPU-bbb", "NVIDIA H100", 80 * 1024 * MIB, 0),
        ]
    )
    agent = live_manager(nvml, FakeDriver(), clock=clock)
    server = await create_server("127.0.0.1:0", lambda _: None, ["warmpath.v1.GpuAgent"])
    metrics = AgentMetrics(CollectorRegistry())

    async def health(index: int) -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            request = health_pb2.HealthCheckRequest(service=gpu_health_name(index))
            reply = await health_pb2_grpc.HealthStub(channel).Check(request)
            return int(reply.status)

    try:
        await observe_gpus(agent, metrics, server)
        assert [await health(0), await health(1)] == [SERVING, SERVING]
        nvml.gpus[1].broken = True
        await observe_gpus(agent, metrics, server)
        assert [await health(0), await health(1)] == [SERVING, NOT_SERVING]
        nvml.gpus[1].broken = False
        clock.now += 60  # past the back-off: read again
        await observe_gpus(agent, metrics, server)
        assert await health(1) == SERVING
        _, events = await agent.feed.wait_after(0, timeout=0)
        assert events == [
            "GPU 1 unhealthy: nvmlDeviceGetMemoryInfo: GPU is lost (injected)",
            "GPU 1 healthy again",
        ]
        await server.stop(0)
        # The server is gone: ask its health servicer itself.
        request = health_pb2.HealthCheckRequest(service=gpu_health_name(0))
        reply = await server.health.Check(request, None)  # type: ignore[arg-type]
        assert reply.status == NOT_SERVING, "shut down: every part is NOT_SERVING"
    finally:
        await server.server.stop(0)


async def test_a_leased_model_is_neither_evicted_nor_expired_nor_unloaded() -> None:
    clock = Clock()
    agent = manager(
        FakeDriver(), spec("busy", 600, keep_alive_seconds=10), spec("other", 600), clock=clock
    )
    await agent.ensure_loaded("busy", lease_seconds=30)
    clock.now += 20
    await agent.expire_idle()
    assert [r.model for r in (await agent.state()).models] == ["busy"], "not expired while leased"
    with pytest.raises(ResourceExhausted, match="0 MiB freeable"):
        await agent.ensure_loaded("other")  # and no time to wait for the lease to end
    with pytest.raises(FailedPrecondition, match="requests in flight"):
        await agent.unload("busy", force=False)
    clock.now += 11  # the lease lapses: nobody renewed it
    outcome = await agent.ensure_loaded("other")
    assert outcome.evicted == ("busy",)


@pytest.mark.parametrize("lease", [-1.0, float("nan"), 301.0])
async def test_a_nonsense_lease_is_refused_and_loads_nothing(lease: float) -> None:
    driver = FakeDriver()
    agent = manager(driver, spec("a", 100))
    with pytest.raises(InvalidRequest, match="lease_seconds must be between 0 and 300"):
        await agent.ensure_loaded("a", lease_seconds=lease)
    assert driver.starts == []


# Waiting for room. Timed waits run on the real clock, scaled down to tenths of a second.


def _deadline_leaving(seconds: float, memory_mib: int) -> float:
    """A deadline that leaves `seconds` to wait once the load (as the agent expects it
    to take for a model never timed here) and the answer margin are set aside."""
    return seconds + estimated_load_seconds(memory_mib * MIB) + 1.0


async def test_a_model_that_does_not_fit_yet_waits_for_a_lease_to_end() -> None:
    agent = manager(FakeDriver(), spec("busy", 600), spec("other", 600), clock=time.time)
    await agent.ensure_loaded("busy", lease_seconds=0.3)
    started = time.monotonic()
    outcome = await agent.ensure_loaded("other", deadline_seconds=30)
    assert outcome.evicted == ("busy",)
    assert 0.25 <= time.monotonic() - started < 5
    assert outcome.cold_start and outcome.load_seconds >= 0.25


async def test_a_model_that_does_not_fit_yet_waits_for_min_residency() -> None:
    agent = manager(
        FakeDriver(), spec("young", 600), spec("other", 600), clock=time.time,
        min_residency_seconds=0.3,
    )  # fmt: skip
    await agent.ensure_loaded("young")
    outcome = await agent.ensure_loaded("other", deadline_seconds=30)
    assert outcome.evicted == ("young",)
    assert outcome.load_seconds >= 0.25


async def test_waiting_for_room_is_single_flight_and_blocks_no_resident_model() -> None:
    gate = asyncio.Event()
    driver = FakeDriver()
    agent = manager(driver, spec("resident", 200), spec("loading", 600), spec("waiting", 600))
    await agent.ensure_loaded("resident")
    driver.release = gate
    loading = asyncio.create_task(agent.ensure_loaded("loading"))
    await asyncio.sleep(0.01)
    driver.release = None
    waiters = [asyncio.create_task(agent.ensure_loaded("waiting", deadline_seconds=60))]
    waiters.append(asyncio.create_task(agent.ensure_loaded("waiting", deadline_seconds=60)))
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters), "no room until the load in progress ends"
    warm = await asyncio.wait_for(agent.ensure_loaded("resident"), 10.0)
    assert not warm.cold_start
    gate.set()  # the load ends: its model becomes evictable (min_residency 0, no lease)
    await loading
    outcomes = await asyncio.wait_for(asyncio.gather(*waiters), 5.0)
    assert driver.starts.count("waiting") == 1
    assert all(o.residency.state is ResidencyState.READY for o in outcomes)
    assert "loading" in outcomes[0].evicted


async def test_waiting_ends_with_the_figures_when_the_deadline_leaves_no_time() -> None:
    agent = manager(FakeDriver(), spec("busy", 600), spec("other", 600), clock=time.time)
    await agent.ensure_loaded("busy", lease_seconds=300)
    started = time.monotonic()
    with pytest.raises(ResourceExhausted) as caught:
        await agent.ensure_loaded("other", deadline_seconds=_deadline_leaving(0.2, 600))
    assert 0.15 <= time.monotonic() - started < 2
    assert "400 MiB free and 0 MiB freeable" in caught.value.message
    assert "600 MiB held by unpinned models that are busy" in caught.value.message
    assert "waited 0.2 s for room" in caught.value.message


async def test_no_waiting_when_only_pinned_models_stand_in_the_way() -> None:
    agent = manager(FakeDriver(), spec("pinned", 800, pinned=True), spec("big", 500))
    await agent.ensure_loaded("pinned")
    started = time.monotonic()
    with pytest.raises(ResourceExhausted, match="waiting cannot help"):
        await agent.ensure_loaded("big", deadline_seconds=60)
    assert time.monotonic() - started < 1


async def test_a_one_off_waits_for_a_young_cheap_victim_rather_than_evict_a_hot_model() -> None:
    async def hot_and_young_loaded() -> ResidencyManager:
        """A hot model and one just loaded fill the GPU; one-off does not fit beside them."""
        agent = manager(
            FakeDriver(), spec("hot", 400), spec("young", 400), spec("one-off", 400),
            clock=time.time, min_residency_seconds=0.3,
        )  # fmt: skip
        await agent.ensure_loaded("hot")
        await asyncio.sleep(0.3)
        await agent.ensure_loaded("hot", warm_requests=50)
        await agent.ensure_loaded("young")
        return agent

    agent = await hot_and_young_loaded()
    patient = await agent.ensure_loaded("one-off", deadline_seconds=30)
    assert patient.evicted == ("young",) and patient.load_seconds >= 0.2

    agent = await hot_and_young_loaded()
    hurried = await agent.ensure_loaded("one-off", deadline_seconds=0)
    assert hurried.evicted == ("hot",), "with no time to wait, the costlier plan goes ahead"


async def test_a_model_outside_the_hot_set_waits_for_another_outsider_not_a_hot_model() -> None:
    async def hot_and_leased_outsider(lease_seconds: float) -> ResidencyManager:
        # 1000 MiB hold the hot model and one more: the others take turns in that room.
        agent = manager(
            FakeDriver(), spec("hot", 400), spec("outsider", 400), spec("one-off", 400),
            clock=time.time,
        )  # fmt: skip
        await agent.ensure_loaded("hot")
        await agent.ensure_loaded("hot", warm_requests=50)
        await agent.ensure_loaded("outsider", lease_seconds=lease_seconds)
        return agent

    agent = await hot_and_leased_outsider(0.3)
    patient = await agent.ensure_loaded("one-off", deadline_seconds=_deadline_leaving(10, 400))
    assert patient.evicted == ("outsider",) and patient.load_seconds >= 0.25

    agent = await hot_and_leased_outsider(300)
    hurried = await agent.ensure_loaded("one-off", deadline_seconds=_deadline_leaving(0.2, 400))
    assert hurried.evicted == ("hot",), "when the wait runs out, the plan goes ahead"
    assert hurried.load_seconds >= 0.15


async def test_the_hot_model_keeps_its_place_against_a_slightly_busier_rival() -> None:
    # 1000 MiB hold one hot model beside room for the others, which take turns there.
    clock = Clock()
    agent = manager(
        FakeDriver(), spec("incumbent", 400), spec("rival", 400), spec("one-off", 400),
        spec("earlier", 400), clock=clock,
    )  # fmt: skip

    async def ask(model: str, at: float) -> None:
        clock.now = at
        await agent.ensure_loaded(model)

    await ask("earlier", 999)
    for at in (1000, 1010, 1020, 1030):
        await ask("incumbent", at)
    await ask("rival", 1030)  # evicts "earlier"; the incumbent alone is hot
    for at in (1037, 1040, 1044, 1050, 1051):
        await ask("rival" if at % 10 else "incumbent", at)
    # The rival is now asked for every 7 s, the incumbent every 10 s: 1.4x, within the
    # noise of either estimate, so the one-off takes the rival's memory.
    outcome = await agent.ensure_loaded("one-off")
    assert outcome.evicted == ("rival",)


async def test_between_its_bursts_a_teams_model_keeps_its_hot_set_place() -> None:
    # 1000 MiB hold one hot model beside room for another. The team asks for its model in
    # bursts of 10 (12 s apart) every 700 s; the rival every 600 s, last 400 s ago. A
    # minute after a burst the team's next request is ~530 s away given the time since
    # its last (the rival's: 200 s), but ~220 s from a moment picked at random (the
    # rival's: 300 s). The hot set ranks by the shorter of the two, so the team's model
    # keeps its place and the one-off takes the rival's memory, not the team's (which
    # the team's next burst would have to reload).
    clock = Clock()
    agent = manager(
        FakeDriver(), spec("team", 400), spec("rival", 400), spec("one-off", 400), clock=clock
    )
    team = [start + 12.0 * i for start in (1000.0, 1700.0, 2400.0) for i in range(10)]
    rival = [968.0, 1568.0, 2168.0]
    asked = [(960.0, "one-off")] + [(t, "team") for t in team] + [(t, "rival") for t in rival]
    for at, model in sorted(asked):  # the team's first load evicts the one-off
        clock.now = at
        await agent.ensure_loaded(model)
    clock.now = team[-1] + 60
    outcome = await agent.ensure_loaded("one-off")
    assert outcome.evicted == ("rival",)


async def test_an_adopted_model_is_not_free_to_evict() -> None:
    clock = Clock()
    driver = FakeDriver()
    agent = manager(driver, spec("adopted", 400), spec("fresh", 400), spec("third", 400),
                    clock=clock)  # fmt: skip
    gpu = (await agent.state()).gpus[0]
    running = await driver.start(spec("adopted", 400), gpu)  # by the agent before a restart
    assert await agent.adopt([(running, gpu.uuid)]) == ["adopted"]
    await agent.ensure_loaded("adopted")  # one request each: the same demand
    clock.now += 1
    await agent.ensure_loaded("fresh")  # timed: its load took next to nothing
    clock.now += 1
    outcome = await agent.ensure_loaded("third")
    # Taken as costing nothing to reload, the adopted model (used less recently) would go.
    assert outcome.evicted == ("fresh",)
