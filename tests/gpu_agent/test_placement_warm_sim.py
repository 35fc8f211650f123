"""The warm tier's simulator runs the agent's own sleep rule and loses no request (no
figures asserted: bench/results/placement.md has them)."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.gpu_agent.conftest import load_bench_module


@pytest.fixture
def warm(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/placement_warm.py, the warm tier's report."""
    return load_bench_module("placement_warm", monkeypatch)


def test_the_warm_tier_wakes_sleepers_and_serves_every_request(
    warm: ModuleType, simulator: ModuleType
) -> None:
    workload = simulator.workloads.WORKLOADS[0]
    results = warm.run([workload], 1, 0, 0.3, warm.HOST_RAM_PER_GPU_MEMORY)
    by_policy = results[workload.name]
    requests = len(workload.trace(0, 0.3))
    for name in (
        warm.WARM,
        warm.LRU_WARM,
        warm.BELADY_WARM,
        simulator.policies.WARMPATH,
        simulator.policies.LRU,
        simulator.policies.BELADY,
    ):
        (outcome,) = by_policy[name]
        assert len(outcome.waits) == requests, "every request is served or counted failed"
    (tier,) = by_policy[warm.WARM]
    assert tier.sleeps > 0
    assert tier.wakes > 0, "models put to sleep were woken rather than loaded"
    rows, met, _, _ = warm.table(results, "smoke")
    assert set(met) == {workload.name}
    assert any(warm.WARM in row for row in rows)


def test_no_host_ram_means_no_sleep(warm: ModuleType, simulator: ModuleType) -> None:
    workload = simulator.workloads.WORKLOADS[0]
    results = warm.run([workload], 1, 0, 0.3, 0.0)
    (tier,) = results[workload.name][warm.WARM]
    assert tier.sleeps == 0
    assert tier.wakes == 0


def test_a_sleeping_server_keeps_a_tenth_of_its_gpu_until_it_is_unloaded(
    warm: ModuleType, simulator: ModuleType
) -> None:
    workload = simulator.workloads.WORKLOADS[3]  # incidents: mixed runtimes on 2 x 32 GB
    simulation = simulator.warm_tier.WarmSimulation(
        workload, warm.warm_policies([])[0], warm.HOST_RAM_PER_GPU_MEMORY
    )
    cluster = simulation.cluster
    server, page_cache = 9, 10  # 14 GB vLLM-like, 16 GB llama.cpp-like
    empty = cluster.free(0)
    for model in (server, page_cache):
        simulation.load(model, simulator.policies.Load(0, ()), 0.0)
    kept = cluster.size(server) // 10
    assert cluster.freed_by_eviction(server, 60.0) == pytest.approx(
        cluster.size(server) - kept, abs=1
    ), "eviction counts on what the server would not keep asleep"
    assert cluster.freed_by_eviction(page_cache, 60.0) == cluster.size(page_cache)

    for model in (server, page_cache):
        simulation.demote(model, 60.0)

    assert set(cluster.asleep) == {server, page_cache}
    assert empty - cluster.free(0) == pytest.approx(kept, abs=1), "only the server keeps some"
    assert cluster.gpus_for(server) == (0,), "a sleeping server wakes where it sleeps"
    assert cluster.need(server) == pytest.approx(cluster.size(server) - kept, abs=1)
    assert cluster.need(page_cache) == cluster.size(page_cache)
    simulation.demote(server, 120.0)  # a load that needs its leftover unloads it
    assert server not in cluster.asleep
    assert cluster.free(0) == empty


@pytest.mark.parametrize(("ready_at", "moves"), [(90.0, True), (20.0, False)])
def test_a_sleeping_server_blocked_by_loads_in_progress_on_its_gpu_loads_elsewhere(
    warm: ModuleType, simulator: ModuleType, ready_at: float, moves: bool
) -> None:
    """As the agent does: when its GPU has room only after loads in progress there (then
    min_residency), and that wait plus its wake is longer than its load, it moves."""
    workload = simulator.workloads.WORKLOADS[3]  # incidents: mixed runtimes on 2 x 32 GB
    simulation = simulator.warm_tier.WarmSimulation(
        workload, warm.warm_policies([])[0], warm.HOST_RAM_PER_GPU_MEMORY
    )
    cluster = simulation.cluster
    server = 7  # 9 GB vLLM-like: a 56 s load, a 1.4 s wake
    cluster.asleep[server] = simulator.cluster.Loaded(server, 0, 0.0, 0.0, 0.0)
    for loading in (11, 6):  # 20 GB and 8 GB, both still loading on GPU 0
        cluster.loaded[loading] = simulator.cluster.Loaded(loading, 0, ready_at, 0.0, 0.0)

    decision = simulation.decide(server, 0.0, 100.0)

    if moves:
        assert decision == simulator.policies.Load(1, ()), "loaded from disk on the empty GPU"
        assert server not in cluster.asleep
        assert simulation.outcome.moved == 1
    else:
        assert decision == "wait", "room on its own GPU comes sooner than a load"
        assert server in cluster.asleep
