"""The residency manager with models bigger than one GPU: gangs, splits, offload, host RAM."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes.drivers import FakeDriver
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.gpu_agent.test_residency import MIB, spec
from warmpath.v1 import gpu_agent_pb2
from warmpath_agent.host_memory import DeclaredHostMemory
from warmpath_agent.inventory import MemoryBook
from warmpath_agent.layouts import Layout, ModelShape
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.nvml import NvmlInventory
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import ResidencyState
from warmpath_agent.simulated_inventory import SimulatedInventory
from warmpath_common.config import ModelSpec, SimulatedGpu
from warmpath_common.convert import placement_to_proto
from warmpath_common.errors import ResourceExhausted, Unavailable
from warmpath_router.clients import host_view

# Every model here: 10 equal layers, and 100 MiB more that each GPU holding layers needs.
LAYERS = 10
BASE = 100 * MIB


def layer_bytes(model: ModelSpec) -> int:
    return (int(model.memory or 0) - BASE) // LAYERS


def shape_of(model: ModelSpec) -> ModelShape:
    memory = int(model.memory or 0)
    return ModelShape(memory, LAYERS, layer_bytes(model), page_cache_bytes=200 * MIB)


def two_gpus(
    driver: FakeDriver,
    *specs: ModelSpec,
    gpu_mib: int = 600,
    host_mib: int = 4000,
) -> tuple[ResidencyManager, MemoryBook]:
    book = MemoryBook()
    gpus = (SimulatedGpu(memory=gpu_mib * MIB), SimulatedGpu(memory=gpu_mib * MIB))
    agent = ResidencyManager(
        "host-a",
        {s.name: s for s in specs},
        SimulatedInventory(gpus, book),
        driver,
        book=book,
        estimate_bytes=lambda s: int(s.memory or 0),
        metrics=AgentMetrics(CollectorRegistry()),
        estimate_shape=shape_of,
        host_memory=DeclaredHostMemory(host_mib * MIB, book),
    )
    return agent, book


async def test_a_model_bigger_than_one_gpu_is_split_over_two_with_no_config_change() -> None:
    driver = FakeDriver()
    agent, book = two_gpus(driver, spec("big", 1000))
    loaded = (await agent.ensure_loaded("big")).residency
    assert loaded.layout is Layout.LAYER_SPLIT
    assert loaded.on_gpus == (0, 1)
    assert loaded.gpu_uuids == ("SIM-00000000-0000-0000-0000-000000000000",
                                "SIM-00000001-0000-0000-0000-000000000000")  # fmt: skip
    assert sum(loaded.layers_on_gpu) == LAYERS
    assert loaded.description.startswith("layer split over GPUs 0, 1")
    placement = driver.placements["big"]
    assert [g.index for g in placement.gpus] == [0, 1]
    assert sum(placement.shares) == pytest.approx(1.0)
    assert book.booked_bytes(0) > 0 and book.booked_bytes(1) > 0
    assert await agent.unload("big", force=False)
    assert book.booked_bytes(0) == book.booked_bytes(1) == 0


async def test_concurrent_callers_share_one_gang_load() -> None:
    driver = FakeDriver(load_seconds=0.05)
    agent, _ = two_gpus(driver, spec("big", 1000))
    await asyncio.gather(*(agent.ensure_loaded("big") for _ in range(5)))
    assert driver.starts == ["big"]


async def test_a_gang_that_fails_to_load_releases_every_gpu_and_keeps_what_was_resident() -> None:
    driver = FakeDriver(fail_models={"big"})
    agent, book = two_gpus(driver, spec("small", 100), spec("big", 900))
    await agent.ensure_loaded("small")
    with pytest.raises(Unavailable):
        await agent.ensure_loaded("big")
    state = {r.model: r for r in (await agent.state()).models}
    assert state["small"].state is ResidencyState.READY
    assert state["big"].state is ResidencyState.FAILED
    assert book.booked_bytes(0) + book.booked_bytes(1) == 100 * MIB


async def test_room_is_made_on_both_gpus_of_the_gang() -> None:
    driver = FakeDriver()
    agent, _ = two_gpus(driver, spec("a", 500), spec("b", 500), spec("big", 1000))
    await agent.ensure_loaded("a")
    await agent.ensure_loaded("b")
    outcome = await agent.ensure_loaded("big")
    assert set(outcome.evicted) == {"a", "b"}
    assert outcome.residency.on_gpus == (0, 1)


async def test_a_pinned_model_on_one_gpu_means_nothing_is_evicted_on_the_other() -> None:
    driver = FakeDriver()
    agent, _ = two_gpus(
        driver, spec("pinned", 500, pinned=True), spec("b", 500), spec("big", 1000, offload="never")
    )
    await agent.ensure_loaded("pinned")
    await agent.ensure_loaded("b")
    with pytest.raises(ResourceExhausted):
        await agent.ensure_loaded("big")
    assert driver.stops == []


async def test_a_model_too_big_for_both_gpus_is_partly_offloaded_and_says_so() -> None:
    driver = FakeDriver()
    huge = spec("huge", 2000)
    agent, book = two_gpus(driver, huge)
    loaded = (await agent.ensure_loaded("huge")).residency
    assert loaded.layout is Layout.OFFLOAD
    on_gpu = sum(loaded.layers_on_gpu)
    assert 0 < on_gpu < LAYERS
    assert driver.placements["huge"].gpu_layers == on_gpu
    assert f"{LAYERS - on_gpu} of {LAYERS} layers offloaded to host RAM" in loaded.description
    assert loaded.expected_slowdown > 1
    assert loaded.host_bytes == (LAYERS - on_gpu) * layer_bytes(huge) + 200 * MIB
    assert book.host_booked_bytes() == loaded.host_bytes


async def test_an_offload_that_would_exhaust_host_ram_is_refused_with_the_figures() -> None:
    agent, _ = two_gpus(FakeDriver(), spec("huge", 2000), host_mib=300)
    with pytest.raises(ResourceExhausted) as caught:
        await agent.ensure_loaded("huge")
    assert "MiB of host RAM" in caught.value.message
    assert "where 300 MiB is available" in caught.value.message


async def test_an_idle_offloaded_model_is_evicted_for_the_host_ram_the_next_offload_needs() -> None:
    # Each needs about 1340 MiB of host RAM offloaded; the host has room for one.
    driver = FakeDriver()
    agent, book = two_gpus(driver, spec("huge", 2000), spec("other", 2000), host_mib=2000)
    first = (await agent.ensure_loaded("huge")).residency
    assert first.layout is Layout.OFFLOAD
    outcome = await agent.ensure_loaded("other")
    assert outcome.evicted == ("huge",)
    assert outcome.residency.layout is Layout.OFFLOAD
    assert "evicting huge for its host RAM" in outcome.residency.placement_reason
    assert book.host_booked_bytes() == outcome.residency.host_bytes <= 2000 * MIB


async def test_offload_never_makes_a_model_too_big_fail_clearly() -> None:
    agent, _ = two_gpus(FakeDriver(), spec("huge", 2000, offload="never"))
    with pytest.raises(ResourceExhausted) as caught:
        await agent.ensure_loaded("huge")
    assert "huge needs 2000 MiB" in caught.value.message
    assert "offload is never" in caught.value.message


async def test_tensor_parallel_beyond_the_healthy_gpus_is_refused() -> None:
    vllm = spec(
        "qwen",
        400,
        backend="vllm",
        source={"served_id": "qwen"},
        chat_format=None,
        container={"image": "vllm/vllm-openai:v0.6.3"},
        tensor_parallel=2,
    )
    driver = FakeDriver()
    agent, _ = two_gpus(driver, vllm)
    loaded = (await agent.ensure_loaded("qwen")).residency
    assert loaded.layout is Layout.TENSOR_PARALLEL
    assert loaded.gpu_bytes == (200 * MIB, 200 * MIB)
    assert loaded.description == "tensor parallel 2 over GPUs 0, 1"


async def test_on_real_gpus_each_gpus_share_is_measured(
    server_and_worker: tuple[int, int],
) -> None:
    server, worker = server_and_worker
    total = 600 * MIB
    nvml = FakeNvml(
        [
            FakeGpu("GPU-aaa", "RTX", total, 0, [(server, 450 * MIB)]),
            FakeGpu("GPU-bbb", "RTX", total, 0, [(worker, 420 * MIB)]),
        ]
    )
    agent = ResidencyManager(
        "host-a",
        {"big": spec("big", 1000)},
        NvmlInventory(cast(ModuleType, nvml)),
        FakeDriver(pid=server),
        book=MemoryBook(),
        estimate_bytes=lambda s: int(s.memory or 0),
        metrics=AgentMetrics(CollectorRegistry()),
        estimate_shape=shape_of,
    )
    loaded = (await agent.ensure_loaded("big")).residency
    assert loaded.on_gpus == (0, 1)
    assert loaded.gpu_bytes == (450 * MIB, 420 * MIB)
    assert loaded.measured_bytes == 870 * MIB


async def test_the_placement_reaches_the_router_as_the_agent_reports_it() -> None:
    agent, _ = two_gpus(FakeDriver(), spec("big", 1000))
    loaded = (await agent.ensure_loaded("big")).residency
    state = gpu_agent_pb2.AgentState(
        models=[
            gpu_agent_pb2.ModelResidency(
                model="big",
                gpu_index=loaded.gpu_index,
                placement=placement_to_proto(loaded.placement),
            )
        ]
    )
    (replica,) = host_view(state, "host-a").replicas
    assert replica.placement is not None
    assert replica.placement.layout == "layer_split"
    assert replica.placement.gpu_indexes == (0, 1)
    assert replica.placement.gpu_uuids == loaded.gpu_uuids
    assert sum(replica.placement.layer_shares) == pytest.approx(1.0)
    assert replica.placement.description == loaded.description
