"""The incident hosts in the placement simulator: models bigger than one GPU are served,
through the agent's gang placement (no figures asserted)."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.gpu_agent.conftest import load_bench_module
from warmpath_agent.layouts import Layout


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_bench_module("placement_hosts", monkeypatch)


@pytest.fixture
def gangs(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_bench_module("placement_gangs", monkeypatch)


def test_every_incident_host_serves_every_model_under_every_policy(
    hosts: ModuleType, simulator: ModuleType
) -> None:
    results = hosts.run_hosts(seeds=1, hours=0.25)
    assert list(results) == [s.name for s in hosts.SCENARIOS]
    assert len(hosts.SCENARIOS) == 5  # one per host the issue names, and a two-GPU variant
    for scenario in hosts.SCENARIOS:
        by_policy = results[scenario.name]
        assert {simulator.policies.LRU, simulator.policies.BELADY} <= set(by_policy)
        assert any(name.startswith("warmpath") for name in by_policy)
        assert any("keep_alive" in name for name in by_policy)
        trace = scenario.trace(0, 0.25)
        for outcome in (outcomes[0] for outcomes in by_policy.values()):
            assert outcome.refused == 0
            assert outcome.served_models == {r.model for r in trace}
            assert len(outcome.waits) == len(trace), "every request is served or counted failed"
    text = hosts.hosts_table(results, 1, 0.25, "bench/placement.py --hosts-only", 0.0)
    assert text.count("Every model served: yes") == len(hosts.SCENARIOS)
    assert "served offloaded" in text and "tensor parallel 4 over GPUs 0, 1, 2, 3" in text
    assert "layers offloaded to host RAM" in text


def test_placement_is_the_agents_gang_code(
    hosts: ModuleType, gangs: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    layouts = []
    real = gangs.plan_gang

    def recording(*args: object, **kwargs: object) -> object:
        plan = real(*args, **kwargs)
        layouts.append(getattr(plan, "layout", None))
        return plan

    monkeypatch.setattr(gangs, "plan_gang", recording)
    hosts.run_hosts(seeds=1, hours=0.5)
    assert set(Layout) <= set(layouts)


def test_a_host_that_cannot_hold_a_model_is_refused_by_the_agents_start_up_check(
    hosts: ModuleType, gangs: ModuleType
) -> None:
    (scenario,) = [s for s in hosts.SCENARIOS if s.name == "gpt-oss host"]  # 4 GPUs
    too_wide = gangs.HostModel("wide", 40.0, 0, 10.0, tensor_parallel=8)
    broken = gangs.host_scenario(
        "broken", "", "", scenario.gpu_gb, 64.0, (too_wide,), scenario.make_trace, ""
    )
    with pytest.raises(hosts.NotServed, match=r"models\.0\.tensor_parallel: wide needs 8 GPUs"):
        hosts.run_hosts(seeds=1, hours=0.1, scenarios=[broken])


def test_ollama_style_policies_evict_before_offloading_and_warmpath_offloads_around(
    hosts: ModuleType, gangs: ModuleType, simulator: ModuleType
) -> None:
    # A 4 GB model, then the 18 GB one on a 16 GB GPU: Ollama's scheduler unloads the
    # idle small model first and offloads fewer layers; the agent keeps it resident
    # (no eviction would fit the big one on the GPU) and offloads more.
    def trace(rng: object, end: float) -> list[object]:
        return [simulator.traces.Request(0.0, 0), simulator.traces.Request(60.0, 1)]

    models = (gangs.ollama("small", 4.0, 32, 2.0), gangs.ollama("big", 18.0, 62, 3.5))
    small_then_big = gangs.host_scenario("tiny", "", "", (16.0,), 64.0, models, trace, "", 1.0)
    requests = small_then_big.trace(0)
    outcomes = {
        policy.name: gangs.HostSimulation(small_then_big, policy).run(requests)
        for policy in gangs.host_policies(requests)
    }
    lru, warmpath = outcomes[simulator.policies.LRU], outcomes[simulator.policies.WARMPATH]
    assert lru.served_offloaded == warmpath.served_offloaded == 1
    assert lru.mean_offloaded_slowdown < warmpath.mean_offloaded_slowdown
