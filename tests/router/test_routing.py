from __future__ import annotations

import random

import pytest

from tests.conftest import GEMMA
from warmpath_common.config import AutoRouting, ModelSpec
from warmpath_common.convert import PlacementInfo, ResidencyState
from warmpath_common.errors import Unavailable
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.registry import ModelRegistry
from warmpath_router.routing import RouteReason, models_fitting_nowhere, place

SPEC = ModelSpec.model_validate(GEMMA)
RESOLVED = ModelRegistry([SPEC], AutoRouting()).resolve("gemma3-270m")


def host(name: str, state: ResidencyState | None = None, reachable: bool = True) -> HostView:
    replicas = () if state is None else (Replica(SPEC.name, name, state, 0, "SIM", 3.0, None),)
    return HostView(name, reachable=reachable, servable=frozenset({SPEC.name}), replicas=replicas)


def cluster(*views: HostView) -> ClusterView:
    view = ClusterView()
    for item in views:
        view.update(item)
    return view


def test_resident_replica_wins_over_load() -> None:
    placement = place(RESOLVED, cluster(host("a"), host("b", ResidencyState.READY)))
    assert placement.host == "b"
    assert placement.reason is RouteReason.RESIDENT
    assert not placement.load_required


def test_load_required_when_resident_nowhere_and_expected_time_is_reported() -> None:
    placement = place(RESOLVED, cluster(host("a"), host("b", ResidencyState.FAILED)))
    assert placement.host == "a"
    assert placement.reason is RouteReason.LOAD_REQUIRED
    assert placement.expected_load_seconds == 3.0


def test_unreachable_hosts_are_candidates_with_reasons() -> None:
    placement = place(RESOLVED, cluster(host("down", reachable=False), host("up")))
    assert placement.host == "up"
    rejected = {c.host: c.rejected_because for c in placement.candidates}
    assert rejected["down"].startswith("host unreachable")


def test_no_host_at_all_is_unavailable_with_reasons() -> None:
    with pytest.raises(Unavailable, match="down: host unreachable"):
        place(RESOLVED, cluster(host("down", reachable=False)))


def test_an_unresponsive_replica_is_passed_over_with_its_agents_reason() -> None:
    hung = Replica(
        SPEC.name, "hung", ResidencyState.UNRESPONSIVE, 0, "SIM", 3.0, None, "3 probes failed"
    )
    view = HostView("hung", reachable=True, servable=frozenset({SPEC.name}), replicas=(hung,))
    placement = place(RESOLVED, cluster(view, host("cold"), host("failed", ResidencyState.FAILED)))
    assert placement.host == "cold", "a cold load, even a failed host, beats a hung server"
    rejected = {c.host: c.rejected_because for c in placement.candidates}
    assert rejected["hung"] == "model server unresponsive: 3 probes failed"
    with pytest.raises(Unavailable, match="hung: model server unresponsive: 3 probes failed"):
        place(RESOLVED, cluster(view))


def test_an_asleep_replica_beats_a_cold_load_and_the_route_says_it_would_be_woken() -> None:
    asleep = Replica(
        SPEC.name, "warm", ResidencyState.ASLEEP, 0, "SIM", 30.0, None, wake_seconds=1.5
    )
    view = HostView("warm", reachable=True, servable=frozenset({SPEC.name}), replicas=(asleep,))
    placement = place(RESOLVED, cluster(host("cold"), view))
    assert placement.host == "warm"
    assert placement.wake_required
    assert placement.load_required
    assert placement.expected_load_seconds == 1.5
    assert placement.explanation == (
        "gemma3-270m is asleep in host RAM on warm; warm would wake it (its last wake took 1.5 s)"
    )
    ready = place(RESOLVED, cluster(view, host("hot", ResidencyState.READY)))
    assert ready.host == "hot"
    assert not ready.wake_required


def test_a_busy_warm_replica_loses_to_an_idle_warm_one_but_not_to_a_cold_host() -> None:
    view = cluster(
        host("busy", ResidencyState.READY), host("idle", ResidencyState.READY), host("cold")
    )
    placement = place(RESOLVED, view, in_flight={("busy", SPEC.name): 7})
    assert placement.host == "idle"
    only_busy = cluster(host("busy", ResidencyState.READY), host("cold"))
    assert place(RESOLVED, only_busy, in_flight={("busy", SPEC.name): 50}).host == "busy"


def test_power_of_two_choices_among_many_warm_replicas() -> None:
    view = cluster(*(host(f"h{i}", ResidencyState.READY) for i in range(6)))
    load = {(f"h{i}", SPEC.name): i for i in range(6)}
    chosen = [
        place(RESOLVED, view, in_flight=load, rng=random.Random(seed)).host for seed in range(200)
    ]
    assert "h5" not in chosen, "the busiest replica never wins a draw of two"
    assert len(set(chosen)) >= 3, "load spreads over replicas instead of herding on one"


def test_an_open_circuit_is_skipped_unless_it_is_the_last_replica() -> None:
    view = cluster(host("flaky", ResidencyState.READY), host("steady", ResidencyState.READY))

    def is_open(key: tuple[str, str]) -> float:
        return 30.0 if key[0] == "flaky" else 0.0

    placement = place(RESOLVED, view, circuit_open=is_open)
    assert placement.host == "steady"
    notes = {c.host: c.rejected_because for c in placement.candidates}
    assert notes["flaky"].startswith("circuit open for 30 s")
    alone = cluster(host("flaky", ResidencyState.READY))
    assert place(RESOLVED, alone, circuit_open=is_open).host == "flaky"


def test_a_host_whose_gpus_are_all_too_small_is_rejected_with_the_figures() -> None:
    never = ModelSpec.model_validate({**GEMMA, "offload": "never"})
    resolved = ModelRegistry([never], AutoRouting()).resolve("gemma3-270m")
    small = HostView(
        "small", reachable=True, servable=frozenset({SPEC.name}), largest_gpu_bytes=512 * 2**20
    )
    big = HostView(
        "big", reachable=True, servable=frozenset({SPEC.name}), largest_gpu_bytes=8 * 2**30
    )
    placement = place(resolved, cluster(small, big))
    assert placement.host == "big"
    notes = {c.host: c.rejected_because for c in placement.candidates}
    assert notes["small"] == (
        "fits no GPU here (needs 600 MiB, largest GPU 512 MiB, all GPUs 512 MiB, offload never)"
    )
    with pytest.raises(Unavailable, match="fits no GPU here"):
        place(resolved, cluster(small))


def test_a_llama_cpp_model_bigger_than_one_gpu_may_go_to_a_host_that_splits_or_offloads() -> None:
    two_small = HostView(
        "two-small",
        reachable=True,
        servable=frozenset({SPEC.name}),
        largest_gpu_bytes=512 * 2**20,
        total_gpu_bytes=1024 * 2**20,
        gpu_count=2,
    )
    assert place(RESOLVED, cluster(two_small)).host == "two-small"
    never = ModelSpec.model_validate({**GEMMA, "offload": "never"})
    resolved = ModelRegistry([never], AutoRouting()).resolve("gemma3-270m")
    assert place(resolved, cluster(two_small)).host == "two-small", "split over both GPUs"


def test_models_too_big_for_every_reported_gpu_are_named() -> None:
    big = ModelSpec.model_validate(
        {**GEMMA, "name": "huge", "aliases": [], "memory": "100GiB", "offload": "never"}
    )
    view = cluster(
        HostView("a", reachable=True, largest_gpu_bytes=80 * 2**30),
        HostView("b", reachable=True, largest_gpu_bytes=24 * 2**30),
        HostView("gone", reachable=False, largest_gpu_bytes=200 * 2**30),
    )
    assert models_fitting_nowhere([SPEC, big], view) == {"huge": (100 * 2**30, 80 * 2**30)}
    assert models_fitting_nowhere([big], cluster(HostView("new", reachable=True))) == {}


def test_the_ready_fast_path_agrees_with_a_full_scan_and_still_explains() -> None:
    view = cluster(
        host("cold"), host("warm", ResidencyState.READY), host("loading", ResidencyState.LOADING)
    )
    placement = place(RESOLVED, view)
    assert placement.host == "warm" and placement.reason is RouteReason.RESIDENT
    notes = {c.host: c.rejected_because for c in placement.candidates}
    assert notes["warm"] == ""
    assert set(notes) == {"cold", "warm", "loading"}, "every host is still explained"
    view.update(host("warm", ResidencyState.FAILED))
    assert place(RESOLVED, view).host == "loading", "the index follows updates"


def test_candidates_carry_their_replicas_placement() -> None:
    split = PlacementInfo("layer_split", (0, 1), ("GPU-a", "GPU-b"), layer_shares=(0.5, 0.5))
    placed = Replica(SPEC.name, "b", ResidencyState.LOADING, 0, "GPU-a", 3.0, None, placement=split)
    view = HostView("b", reachable=True, servable=frozenset({SPEC.name}), replicas=(placed,))
    placement = place(RESOLVED, cluster(host("a"), view))
    by_host = {c.host: c.placement for c in placement.candidates}
    assert by_host == {"a": None, "b": split}
