"""The warm tier's simulator runs the agent's own sleep rule and loses no request (no
figures asserted: bench/results/placement.md has them)."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.gpu_agent.conftest import load_bench_module


@pytest.fixture
def warm(placement: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/placement_warm.py, on the placement simulator it extends."""
    return load_bench_module("placement_warm", monkeypatch)


def test_the_warm_tier_wakes_sleepers_and_serves_every_request(
    warm: ModuleType, placement: ModuleType
) -> None:
    workload = placement.WORKLOADS[0]
    results = warm.run([workload], 1, 0, 0.3, warm.HOST_RAM_PER_GPU_MEMORY)
    by_policy = results[workload.name]
    requests = len(workload.trace(0, 0.3))
    for name in (
        warm.WARM,
        warm.LRU_WARM,
        warm.BELADY_WARM,
        placement.WARMPATH,
        placement.LRU,
        placement.BELADY,
    ):
        (outcome,) = by_policy[name]
        assert len(outcome.waits) == requests, "every request is served or counted failed"
    (tier,) = by_policy[warm.WARM]
    assert tier.sleeps > 0
    assert tier.wakes > 0, "models put to sleep were woken rather than loaded"
    rows, met, _, _ = warm.table(results, "smoke")
    assert set(met) == {workload.name}
    assert any(warm.WARM in row for row in rows)


def test_no_host_ram_means_no_sleep(warm: ModuleType, placement: ModuleType) -> None:
    workload = placement.WORKLOADS[0]
    results = warm.run([workload], 1, 0, 0.3, 0.0)
    (tier,) = results[workload.name][warm.WARM]
    assert tier.sleeps == 0
    assert tier.wakes == 0
