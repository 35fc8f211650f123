from __future__ import annotations

import pytest

from warmpath_agent.eviction import (
    DemandTracker,
    GpuRoom,
    NoRoom,
    PlacementPlan,
    ResidentModel,
    choose_victims,
    plan_placement,
)

GB = 1024**3
NOW = 10_000.0


def resident(
    name: str,
    size_gb: float,
    *,
    load: float = 10,
    demand: float = 1,
    last_used: float = 0,
    since: float = 0,
    pinned: bool = False,
    in_use: bool = False,
) -> ResidentModel:
    return ResidentModel(name, int(size_gb * GB), load, demand, last_used, since, pinned, in_use)


def names(victims: tuple[ResidentModel, ...] | None) -> set[str] | None:
    return None if victims is None else {v.model for v in victims}


def test_never_pinned_in_use_or_too_recently_loaded() -> None:
    residents = [
        resident("pinned", 10, pinned=True),
        resident("busy", 10, in_use=True),
        resident("fresh", 10, since=NOW - 5),
        resident("ok", 10),
    ]
    assert names(choose_victims(residents, 5 * GB, NOW, min_residency_seconds=60)) == {"ok"}
    assert choose_victims(residents, 15 * GB, NOW, min_residency_seconds=60) is None


def test_cheapest_reload_cost_goes_first_not_largest_or_oldest() -> None:
    # The seed incident evicted largest-first; a popular large model should stay.
    popular_big = resident("popular-big", 20, load=30, demand=10, last_used=1)
    idle_small = resident("idle-small", 8, load=5, demand=0.1, last_used=9)
    idle_medium = resident("idle-medium", 8, load=8, demand=0.2, last_used=8)
    victims = choose_victims([popular_big, idle_small, idle_medium], 12 * GB, NOW, 0)
    assert names(victims) == {"idle-small", "idle-medium"}


def test_victims_not_needed_for_the_shortfall_are_put_back() -> None:
    cheap_small = resident("cheap-small", 1, demand=0.01)
    big = resident("big", 10, demand=0.5)
    # cheap-small goes first by cost per byte, but big alone covers the need.
    assert names(choose_victims([cheap_small, big], 9 * GB, NOW, 0)) == {"big"}


def test_ties_fall_back_to_least_recently_used() -> None:
    a = resident("a", 5, last_used=5)
    b = resident("b", 5, last_used=1)
    assert names(choose_victims([a, b], 4 * GB, NOW, 0)) == {"b"}


def test_placement_prefers_free_room_then_the_cheapest_gpu() -> None:
    gpus = [
        GpuRoom(0, 2 * GB, (resident("hot", 10, demand=50),)),
        GpuRoom(1, 3 * GB, (resident("cold", 10, demand=0.1),)),
    ]
    assert plan_placement(gpus, 2 * GB, NOW, 0) == PlacementPlan(1, ())
    plan = plan_placement(gpus, 8 * GB, NOW, 0)
    assert isinstance(plan, PlacementPlan)
    assert plan.gpu_index == 1 and names(plan.victims) == {"cold"}


def test_no_room_reports_free_and_freeable() -> None:
    gpus = [GpuRoom(0, 1 * GB, (resident("pinned", 10, pinned=True), resident("x", 2)))]
    plan = plan_placement(gpus, 8 * GB, NOW, 0)
    assert plan == NoRoom(0, 1 * GB, 2 * GB)


def test_demand_decays_with_its_half_life() -> None:
    demand = DemandTracker(half_life_seconds=60)
    for second in range(600):  # one request a second for ten half-lives
        demand.record("m", float(second))
    assert demand.per_minute("m", 600.0) == pytest.approx(60, rel=0.02)
    assert demand.per_minute("m", 660.0) == pytest.approx(30, rel=0.02)
    assert demand.per_minute("never", 0.0) == 0
