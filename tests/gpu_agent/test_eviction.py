from __future__ import annotations

import pytest

from warmpath_agent.demand import DemandTracker
from warmpath_agent.eviction import (
    ASSUMED_START_SECONDS,
    Candidate,
    GpuRoom,
    NoRoom,
    PlacementPlan,
    ResidentModel,
    choose_victims,
    estimated_load_seconds,
    plan_placement,
    protected_models,
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
    assert plan == NoRoom(0, 1 * GB, 2 * GB, waitable_bytes=0, need_bytes=8 * GB)
    assert not plan.fits_after_waiting, "only a pinned model stands in the way"


def test_no_room_yet_counts_busy_and_young_models_as_room_to_wait_for() -> None:
    residents = (
        resident("pinned", 4, pinned=True),
        resident("busy", 3, in_use=True),
        resident("young", 2, since=NOW - 5),
        resident("idle", 1),
    )
    plan = plan_placement([GpuRoom(0, 1 * GB, residents)], 6 * GB, NOW, 60)
    assert plan == NoRoom(0, 1 * GB, 1 * GB, waitable_bytes=5 * GB, need_bytes=6 * GB)
    assert plan.fits_after_waiting
    too_big = plan_placement([GpuRoom(0, 1 * GB, residents)], 8 * GB, NOW, 60)
    assert isinstance(too_big, NoRoom) and not too_big.fits_after_waiting


def test_no_room_names_the_gpu_that_comes_closest_after_waiting() -> None:
    gpus = [
        GpuRoom(0, 2 * GB, (resident("pinned", 8, pinned=True),)),
        GpuRoom(1, 1 * GB, (resident("busy", 8, in_use=True),)),
    ]
    plan = plan_placement(gpus, 6 * GB, NOW, 0)
    assert isinstance(plan, NoRoom) and plan.gpu_index == 1 and plan.fits_after_waiting


def test_a_young_cheap_victim_is_worth_waiting_for_rather_than_a_hot_one_now() -> None:
    hot = resident("hot", 8, load=30, demand=20)
    young_one_off = resident("one-off", 8, load=10, demand=0.1, since=NOW - 4)
    plan = plan_placement([GpuRoom(0, 0, (hot, young_one_off))], 6 * GB, NOW, 10)
    assert isinstance(plan, PlacementPlan)
    assert names(plan.victims) == {"hot"}, "what a caller that cannot wait must evict"
    assert plan.cheaper_in_seconds == pytest.approx(6)
    later = plan_placement([GpuRoom(0, 0, (hot, young_one_off))], 6 * GB, NOW + 6, 10)
    assert isinstance(later, PlacementPlan)
    assert names(later.victims) == {"one-off"} and later.cheaper_in_seconds == 0


def test_no_waiting_suggested_when_the_young_model_is_the_costlier() -> None:
    idle = resident("idle", 8, load=10, demand=0.1)
    young_hot = resident("young-hot", 8, load=30, demand=20, since=NOW - 4)
    plan = plan_placement([GpuRoom(0, 0, (idle, young_hot))], 6 * GB, NOW, 10)
    assert plan == PlacementPlan(0, (idle,))


def test_a_model_never_timed_here_is_assumed_slow_to_reload_in_proportion_to_size() -> None:
    assert estimated_load_seconds(0) == ASSUMED_START_SECONDS
    assert estimated_load_seconds(10 * GB) == pytest.approx(ASSUMED_START_SECONDS + 20)
    assert estimated_load_seconds(10 * GB) > estimated_load_seconds(1 * GB)


def test_steady_demand_is_the_request_rate() -> None:
    demand = DemandTracker()
    for second in range(0, 600, 10):
        demand.record("m", float(second))
    assert demand.per_minute("m", 590.0) == pytest.approx(6)
    assert demand.per_minute("never", 0.0) == 0


def test_requests_reported_together_share_the_time_since_the_last_report() -> None:
    demand = DemandTracker()
    for second in range(0, 600, 50):
        demand.record("m", float(second), requests=10)
    assert demand.per_minute("m", 550.0) == pytest.approx(12)


def bursty_team() -> tuple[DemandTracker, float]:
    """A team's burst of 10 requests, 12 s apart, every 700 s; and when the last one ended."""
    demand = DemandTracker()
    for start in (0.0, 700.0, 1400.0):
        for i in range(10):
            demand.record("team", start + 12.0 * i)
    return demand, 1400.0 + 12.0 * 9


def test_after_a_burst_the_next_is_expected_when_bursts_come_not_at_the_burst_rate() -> None:
    demand, last = bursty_team()
    # Only the gaps between bursts (592 s) outlast the minute since the burst ended.
    assert demand.expected_seconds_to_next("team", last + 60) == pytest.approx(532)
    assert demand.per_minute("team", last + 60) < 0.2 < 5, "not the burst's 5 per minute"


def test_a_periodic_probe_is_expected_when_its_period_comes_round() -> None:
    demand = DemandTracker()
    for start in range(0, 3000, 300):
        demand.record("probed", float(start))
    assert demand.expected_seconds_to_next("probed", 2700.0 + 60) == pytest.approx(240)
    assert demand.expected_seconds_to_next("probed", 2700.0 + 290) == pytest.approx(10)
    # From a moment picked at random: half the period.
    assert demand.average_seconds_to_next("probed", 2700.0 + 60) == pytest.approx(150)
    assert demand.hot_set_per_minute("probed", 2700.0 + 290) == pytest.approx(6)


def test_a_model_idle_longer_than_its_recent_gaps_is_expected_to_stay_idle() -> None:
    demand = DemandTracker()
    for second in range(0, 100, 10):
        demand.record("was-hot", float(second))
    assert demand.per_minute("was-hot", 90.0 + 600) == pytest.approx(60 / 600)
    demand.record("once", 0.0)
    assert demand.expected_seconds_to_next("once", 10.0) == 300, "the first-gap guess"
    assert demand.expected_seconds_to_next("once", 900.0) == 900
    # The time average forgets the same way.
    assert demand.average_seconds_to_next("was-hot", 90.0 + 600) == 600, "idle past every gap"
    assert demand.average_seconds_to_next("once", 10.0) == 300, "the first-gap guess"
    assert demand.average_seconds_to_next("never", 0.0) == float("inf")


def test_recent_gaps_outweigh_old_ones() -> None:
    demand = DemandTracker()
    for minute in range(20):  # once a minute, then once a second
        demand.record("m", 60.0 * minute)
    assert demand.per_minute("m", 60.0 * 19) == pytest.approx(1)
    for second in range(1, 31):
        demand.record("m", 60.0 * 19 + second)
    assert demand.per_minute("m", 60.0 * 19 + 30) > 10


def test_between_bursts_the_bursty_model_goes_before_a_steadily_used_one() -> None:
    demand, _ = bursty_team()
    for second in range(0, 1600, 60):
        demand.record("steady", float(second))
    now = 1600.0
    residents = [
        resident(m, 10, load=60, demand=demand.per_minute(m, now)) for m in ("team", "steady")
    ]
    assert names(choose_victims(residents, 5 * GB, now, 0)) == {"team"}


# The hot set.


def test_the_hot_set_leaves_room_for_the_largest_model_outside_it() -> None:
    gpus = [GpuRoom(0, 24 * GB, ()), GpuRoom(1, 24 * GB, ())]
    candidates = [  # in order of reload cost per byte
        Candidate("a", 10 * GB, 10, 10.0),
        Candidate("b", 10 * GB, 10, 9.0),
        Candidate("c", 10 * GB, 10, 8.0),
        Candidate("d", 20 * GB, 10, 4.0),
        Candidate("e", 2 * GB, 1, 1.0),
    ]
    # a, b and c with d's 20 GB left for the rest would not pack onto 2 x 24 GB; c and d
    # take turns in that room; e still fits beside a and b.
    assert protected_models(gpus, candidates) == {"a", "b", "e"}


def test_the_last_hot_set_keeps_its_place_unless_outranked_twice_over() -> None:
    # One hot place: a 10 GB model, beside room for the 10 GB models outside it.
    gpus = [GpuRoom(0, 20 * GB, ())]
    incumbent, rare = Candidate("incumbent", 10 * GB, 10, 1.0), Candidate("rare", 10 * GB, 10, 0.1)
    was_hot = frozenset({"incumbent"})
    close_rival = [incumbent, rare, Candidate("rival", 10 * GB, 10, 1.5)]
    assert protected_models(gpus, close_rival) == {"rival"}
    assert protected_models(gpus, close_rival, incumbents=was_hot) == {"incumbent"}, (
        "a rival worth 1.5x is within the estimates' noise: no reason to swap"
    )
    clear_rival = [incumbent, rare, Candidate("rival", 10 * GB, 10, 2.5)]
    assert protected_models(gpus, clear_rival, incumbents=was_hot) == {"rival"}


def test_an_incumbent_no_longer_asked_for_leaves_the_hot_set() -> None:
    gpus = [GpuRoom(0, 20 * GB, ())]
    rival = Candidate("rival", 10 * GB, 10, 0.1)
    assert protected_models(gpus, [rival], incumbents=frozenset({"gone"})) == {"rival"}


def test_everything_is_hot_when_everything_fits_and_nothing_unasked_is() -> None:
    gpus = [GpuRoom(0, 10 * GB, (resident("r", 8),)), GpuRoom(1, 2 * GB, ())]
    candidates = [Candidate("r", 8 * GB, 5, 1.0), Candidate("s", 9 * GB, 1, 1.0)]
    assert protected_models(gpus, candidates) == {"r", "s"}
    assert protected_models(gpus, [*candidates, Candidate("never", 1 * GB, 5, 0.0)]) == {"r", "s"}


def test_pinned_memory_is_not_room_for_the_hot_set() -> None:
    gpus = [GpuRoom(0, 4 * GB, (resident("pinned", 16, pinned=True),))]
    candidates = [Candidate("pinned", 16 * GB, 10, 5.0), Candidate("x", 3 * GB, 5, 1.0)]
    assert protected_models(gpus, candidates) == {"x"}
    assert protected_models(gpus, [*candidates, Candidate("y", 3 * GB, 1, 1.0)]) == set()


def test_models_outside_the_hot_set_go_first_whatever_their_cost() -> None:
    hot = resident("hot", 8, demand=0.5)
    costly_outsider = resident("outsider", 8, demand=5)
    victims = choose_victims([hot, costly_outsider], 6 * GB, NOW, 0, frozenset({"hot"}))
    assert names(victims) == {"outsider"}
    assert names(choose_victims([hot, costly_outsider], 6 * GB, NOW, 0)) == {"hot"}


def test_a_model_outside_the_hot_set_waits_rather_than_evict_a_hot_one() -> None:
    hot = resident("hot", 8, demand=20)
    busy_outsider = resident("outsider", 8, demand=0.1, in_use=True)
    gpus = [GpuRoom(0, 0, (hot, busy_outsider))]
    plan = plan_placement(gpus, 6 * GB, NOW, 0, model="one-off", protected=frozenset({"hot"}))
    assert isinstance(plan, PlacementPlan)
    assert names(plan.victims) == {"hot"} and plan.protected_victims == 1
    assert plan.waits_for_unprotected, "the outsider's memory frees itself"

    hot_request = plan_placement(
        gpus, 6 * GB, NOW, 0, model="hot2", protected=frozenset({"hot", "hot2"})
    )
    assert isinstance(hot_request, PlacementPlan) and not hot_request.waits_for_unprotected

    idle_outsider = resident("outsider", 8, demand=0.1)
    later = plan_placement(
        [GpuRoom(0, 0, (hot, idle_outsider))], 6 * GB, NOW, 0, model="one-off",
        protected=frozenset({"hot"}),
    )  # fmt: skip
    assert later == PlacementPlan(0, (idle_outsider,))


def test_no_waiting_when_nothing_outside_the_hot_set_will_free_itself() -> None:
    gpus = [GpuRoom(0, 0, (resident("hot", 8, demand=20),))]
    plan = plan_placement(gpus, 6 * GB, NOW, 0, model="one-off", protected=frozenset({"hot"}))
    assert isinstance(plan, PlacementPlan) and not plan.waits_for_unprotected


def test_the_hot_set_sees_a_bursty_model_by_its_time_average_between_bursts() -> None:
    demand, last = bursty_team()
    average = demand.average_seconds_to_next("team", last + 60)
    assert 12 < average < 592, "between the bursts' spacing and the gap between them"
    # The same at any moment between bursts; the conditional wait swings from 532 s to 42 s.
    assert demand.average_seconds_to_next("team", last + 550) == pytest.approx(average)
    assert demand.hot_set_per_minute("team", last + 60) == pytest.approx(60 / average)
    assert demand.hot_set_per_minute("team", last + 60) > 2 * demand.per_minute("team", last + 60)
    # Due soon: the conditional wait is the shorter, and the hot set takes it.
    assert demand.hot_set_per_minute("team", last + 550) == pytest.approx(60 / 42)


def test_between_bursts_the_team_model_keeps_its_hot_set_place_from_a_steady_rival() -> None:
    # 30 GB: the hot set holds the 20 GB team model or the 8 GB rival, with room for the
    # other. Ranked by the conditional wait the rival wins a minute after the team's
    # burst, and the team's model would be evicted before its next burst.
    demand, last = bursty_team()
    now = last + 60
    gpus = [GpuRoom(0, 30 * GB, ())]

    def hot_set(team_demand: float) -> frozenset[str]:
        candidates = [
            Candidate("team", 20 * GB, 100.0, team_demand),
            Candidate("rival", 8 * GB, 10.0, 0.8),
            Candidate("one-off", 4 * GB, 5.0, 0.01),
        ]
        return protected_models(gpus, candidates)

    assert hot_set(demand.per_minute("team", now)) == {"rival"}
    assert hot_set(demand.hot_set_per_minute("team", now)) == {"team"}
