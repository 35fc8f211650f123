from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.gpu_agent.test_eviction import GB, NOW, resident
from warmpath_agent.eviction import (
    Candidate,
    GpuRoom,
    NoRoom,
    ResidentModel,
    packs,
    protected_models,
)
from warmpath_agent.gang import plan_gang
from warmpath_agent.layouts import GangPlan, HostRamShort, Layout, ModelShape, Offload


def gpu(index: int, free_gb: float, *residents: ResidentModel) -> GpuRoom:
    return GpuRoom(index, int(free_gb * GB), residents)


def llama(total_gb: float, layers: int = 40, offload: Offload = Offload.ALLOWED) -> ModelShape:
    """A llama.cpp model: 1 GB that every GPU needs, the rest in `layers` equal layers."""
    return ModelShape(
        total_bytes=int(total_gb * GB),
        layers=layers,
        layer_bytes=int((total_gb - 1) * GB) // layers,
        splittable=True,
        offload=offload,
        page_cache_bytes=int(total_gb * GB),
    )


def planned(result: GangPlan | NoRoom | HostRamShort) -> GangPlan:
    assert isinstance(result, GangPlan), result
    return result


def test_a_model_that_fits_one_gpu_stays_on_one() -> None:
    plan = planned(plan_gang([gpu(0, 10), gpu(1, 12)], llama(8), NOW, 0))
    assert plan.layout is Layout.SINGLE
    assert plan.gpu_indexes == (1,)
    assert plan.victims == ()


def test_a_model_bigger_than_any_gpu_is_split_over_as_few_as_it_fits_on() -> None:
    # deepseek-coder:33b, 18 GB, on a host of 16 GB GPUs: two of the three are enough.
    plan = planned(plan_gang([gpu(0, 16), gpu(1, 16), gpu(2, 16)], llama(18), NOW, 0))
    assert plan.layout is Layout.LAYER_SPLIT
    assert len(plan.gpu_indexes) == 2
    assert sum(plan.layers_on_gpu) == 40
    assert all(b <= 16 * GB for b in plan.gpu_bytes)
    assert sum(plan.shares) == pytest.approx(1.0)


def test_split_shares_follow_each_gpus_room() -> None:
    plan = planned(plan_gang([gpu(0, 24), gpu(1, 8)], llama(25), NOW, 0))
    big, small = plan.layers_on_gpu
    assert big > small > 0
    assert plan.gpu_bytes[0] <= 24 * GB and plan.gpu_bytes[1] <= 8 * GB


def test_room_is_made_on_every_gpu_of_the_gang_and_a_spanning_victim_counts_once() -> None:
    spanning = resident("old-70b", 12)
    rooms = [gpu(0, 4, spanning), gpu(1, 4, spanning)]
    plan = planned(plan_gang(rooms, llama(30), NOW, 0))
    assert plan.layout is Layout.LAYER_SPLIT
    assert [v.model for v in plan.victims] == ["old-70b"]
    assert plan.cost == pytest.approx(spanning.reload_cost)


def test_room_on_all_gpus_or_none_a_pinned_model_takes_its_gpu_out_of_the_gang() -> None:
    rooms = [
        gpu(0, 2, resident("pinned", 14, pinned=True)),
        gpu(1, 4, resident("a", 12)),
        gpu(2, 4, resident("b", 12)),
    ]
    plan = planned(plan_gang(rooms, llama(20, offload=Offload.NEVER), NOW, 0))
    assert plan.gpu_indexes == (1, 2)
    assert {v.model for v in plan.victims} == {"a", "b"}


def test_no_gang_evicts_anything_when_one_gpu_of_it_cannot_get_room() -> None:
    rooms = [gpu(0, 2, resident("pinned", 14, pinned=True)), gpu(1, 4, resident("a", 12))]
    result = plan_gang(rooms, llama(20, offload=Offload.NEVER), NOW, 0)
    assert isinstance(result, NoRoom)
    assert not result.fits_after_waiting


def test_tensor_parallel_takes_exactly_n_gpus_each_with_room_for_its_share() -> None:
    shape = ModelShape(total_bytes=40 * GB, tensor_parallel=2)
    plan = planned(plan_gang([gpu(0, 24), gpu(1, 16), gpu(2, 24)], shape, NOW, 0))
    assert plan.layout is Layout.TENSOR_PARALLEL
    assert plan.gpu_indexes == (0, 2)
    assert plan.gpu_bytes == (20 * GB, 20 * GB)


def test_tensor_parallel_larger_than_the_gpu_count_never_fits() -> None:
    result = plan_gang([gpu(0, 80)], ModelShape(total_bytes=GB, tensor_parallel=2), NOW, 0)
    assert isinstance(result, NoRoom)
    assert not result.fits_after_waiting


def test_offload_is_the_last_resort_for_a_model_too_big_for_every_gpu_set() -> None:
    # gpt-oss-120b at 183 GB on two 32 GB GPUs.
    plan = planned(plan_gang([gpu(0, 32), gpu(1, 32)], llama(183, layers=36), NOW, 0))
    assert plan.layout is Layout.OFFLOAD
    assert 0 < plan.gpu_layers < 36
    assert plan.offloaded_layers == 36 - plan.gpu_layers
    assert plan.host_bytes > plan.offloaded_layers * (182 * GB // 36)
    assert plan.victims == ()
    assert "host RAM" in plan.offload_reason


def test_never_offloaded_merely_because_another_model_is_resident() -> None:
    rooms = [gpu(0, 4, resident("coder", 18)), gpu(1, 4, resident("fast", 2))]
    plan = planned(plan_gang(rooms, llama(20), NOW, 0))
    assert plan.layout is Layout.SINGLE
    assert [v.model for v in plan.victims] == ["coder"]


def test_offload_preferred_beats_an_eviction_and_says_so() -> None:
    rooms = [gpu(0, 4, resident("coder", 18))]
    plan = planned(plan_gang(rooms, llama(20, offload=Offload.PREFERRED), NOW, 0))
    assert plan.layout is Layout.OFFLOAD
    assert plan.victims == ()
    assert "evicting coder" in plan.offload_reason and "costlier" in plan.offload_reason


def test_a_model_waits_for_young_residents_rather_than_be_offloaded() -> None:
    rooms = [gpu(0, 4, resident("fresh", 18, since=NOW - 5))]
    result = plan_gang(rooms, llama(20), NOW, min_residency_seconds=60)
    assert isinstance(result, NoRoom)
    assert result.fits_after_waiting


def test_an_offload_that_would_exhaust_host_ram_is_refused_with_the_figures() -> None:
    result = plan_gang([gpu(0, 8)], llama(40), NOW, 0, host_free_bytes=16 * GB)
    assert isinstance(result, HostRamShort)
    assert result.free_bytes == 16 * GB
    assert result.need_bytes > 16 * GB
    assert 0 < result.gpu_layers < result.total_layers == 40


def offloaded(name: str, gpu_gb: float, host_gb: float, **kwargs: Any) -> ResidentModel:
    """A resident with `host_gb` of its layers in host RAM."""
    return replace(resident(name, gpu_gb, **kwargs), host_bytes=int(host_gb * GB))


def test_an_idle_offloaded_model_is_evicted_for_the_host_ram_another_offload_needs() -> None:
    # Two models that both need offload on an 8 GB GPU, and host RAM for one at a time
    # (30 GB free, 50 GB held by the first; the second needs over 70 GB).
    rooms = [gpu(0, 3, offloaded("first", 5, 50))]
    plan = planned(plan_gang(rooms, llama(40), NOW, 0, host_free_bytes=30 * GB))
    assert plan.layout is Layout.OFFLOAD
    assert [v.model for v in plan.victims] == ["first"]
    assert plan.host_bytes <= 80 * GB
    assert plan.gpu_layers > 0, "the GPU memory the victim held is used too"
    assert "evicting first for its host RAM" in plan.offload_reason


def test_an_offload_waits_while_a_busy_offloaded_model_holds_the_host_ram() -> None:
    rooms = [gpu(0, 3, offloaded("first", 5, 50, in_use=True))]
    result = plan_gang(rooms, llama(40), NOW, 0, host_free_bytes=30 * GB)
    assert isinstance(result, NoRoom)
    assert result.fits_after_waiting


def test_host_ram_a_pinned_offloaded_model_holds_is_never_taken() -> None:
    rooms = [gpu(0, 3, offloaded("first", 5, 50, pinned=True))]
    result = plan_gang(rooms, llama(40), NOW, 0, host_free_bytes=30 * GB)
    assert isinstance(result, HostRamShort)
    assert result.free_bytes == 30 * GB


def test_offload_never_leaves_a_model_too_big_unplaced() -> None:
    result = plan_gang([gpu(0, 8)], llama(40, offload=Offload.NEVER), NOW, 0)
    assert isinstance(result, NoRoom)
    assert not result.fits_after_waiting


def test_with_every_gpu_full_an_offload_evicts_the_cheapest_room_for_its_layers() -> None:
    rooms = [gpu(0, 0, resident("a", 8, demand=5)), gpu(1, 0, resident("b", 8, demand=1))]
    plan = planned(plan_gang(rooms, llama(40), NOW, 0))
    assert plan.layout is Layout.OFFLOAD
    assert [v.model for v in plan.victims] == ["b"]
    assert plan.gpu_indexes == (1,)


def test_an_offload_whose_gpu_room_busy_models_hold_waits_rather_than_fails() -> None:
    # deepseek-coder:33b (18 GB) on a 16 GB GPU that a busy model fills for now: it
    # must wait for room, not be refused as fitting on no GPU set.
    rooms = [gpu(0, 0.5, resident("busy", 15.5, in_use=True))]
    result = plan_gang(rooms, llama(18), NOW, 0, host_free_bytes=64 * GB)
    assert isinstance(result, NoRoom)
    assert result.fits_after_waiting
    pinned = [gpu(0, 0.5, resident("pinned", 15.5, pinned=True))]
    result = plan_gang(pinned, llama(18), NOW, 0, host_free_bytes=64 * GB)
    assert isinstance(result, NoRoom)
    assert not result.fits_after_waiting


def test_a_split_evicting_a_hot_model_for_a_cold_one_waits_for_cold_memory() -> None:
    rooms = [
        gpu(0, 4, resident("hot", 12)),
        gpu(1, 4, resident("cold-busy", 12, in_use=True)),
    ]
    plan = planned(
        plan_gang(rooms, llama(14, offload=Offload.NEVER), NOW, 0, protected=frozenset({"hot"}))
    )
    assert plan.layout is Layout.SINGLE
    assert plan.waits_for_unprotected


def test_young_gang_victims_make_the_plan_say_when_it_gets_cheaper() -> None:
    rooms = [
        gpu(0, 4, resident("dear", 8, demand=50), resident("young", 8, since=NOW - 5)),
        gpu(1, 16),
    ]
    plan = planned(plan_gang(rooms, llama(22, offload=Offload.NEVER), NOW, 10))
    assert plan.layout is Layout.LAYER_SPLIT
    assert plan.cheaper_in_seconds == pytest.approx(5)


def test_the_hot_set_packs_a_model_bigger_than_one_gpu_over_several() -> None:
    rooms = [gpu(0, 0, resident("fast", 2)), gpu(1, 20)]
    candidates = [
        Candidate("fast", 2 * GB, 5, 10),
        Candidate("llama3.1:70b", 30 * GB, 60, 5),
    ]
    hot = protected_models([*rooms, gpu(2, 20)], candidates)
    assert hot == {"fast", "llama3.1:70b"}
    assert packs([30, 2], [22, 20]) and not packs([43], [22, 20])


def test_a_model_only_an_offload_can_hold_leaves_the_hot_set_to_the_others() -> None:
    # deepseek-coder:33b (18 GB) on a 16 GB GPU runs offloaded in the room left: keeping
    # room for all of it would leave no hot set at all, and no defence against thrashing.
    candidates = [
        Candidate("deepseek-coder:33b", 18 * GB, 98, 2),
        Candidate("llama3.2:3b", 2 * GB, 4, 12),
        Candidate("llama3.1:8b", 5 * GB, 6, 1),
    ]
    hot = protected_models([gpu(0, 16)], candidates)
    assert hot == {"llama3.2:3b", "llama3.1:8b"}
