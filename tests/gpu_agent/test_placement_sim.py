"""The placement simulator runs the agent's policy and loses no request (no figures asserted)."""

from __future__ import annotations

import random
import sys
from types import ModuleType

import pytest


def test_simulator_runs_every_policy_on_every_trace(simulator: ModuleType) -> None:
    results = simulator.replay.run(seeds=1, hours=0.2)
    assert set(results) == {w.name for w in simulator.workloads.WORKLOADS}
    for workload in simulator.workloads.WORKLOADS:
        by_policy = results[workload.name]
        assert "LRU" in by_policy and any(name.startswith("warmpath") for name in by_policy)
        requests = len(workload.trace(0, 0.2))
        for name, outcomes in by_policy.items():
            assert outcomes[0].cold_loads >= 3
            if name == simulator.hindsight.HINDSIGHT:
                continue  # a count from the trace, not a simulation
            assert len(outcomes[0].waits) == requests, "every request is served or counted failed"
    text = simulator.report.table(results, 1, 0.0)
    assert "| policy |" in text and "target met" in text
    assert "**Result.**" in simulator.report.verdict(results)


def test_the_warmpath_policy_is_the_agents_plan_placement(
    simulator: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = simulator.policies.plan_placement

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(simulator.policies, "plan_placement", counting)
    workload = simulator.workloads.WORKLOADS[0]
    policy = simulator.policies.policies([])[0]
    assert policy.name.startswith("warmpath")
    simulator.simulation.simulate(workload, workload.trace(0, 0.05), policy)
    assert calls


def test_a_request_with_no_room_yet_waits_rather_than_vanishes(simulator: ModuleType) -> None:
    def two_requests(rng: random.Random, end: float) -> list[object]:
        return [simulator.traces.Request(0.0, 0), simulator.traces.Request(1.0, 1)]

    tiny = simulator.traces.Workload("tiny", (6, 6), (4.0, 4.0), (10,), 1.0, "", two_requests)
    trace = tiny.trace(0)
    for policy in (
        simulator.policies.Policy(
            "warmpath", simulator.policies.warmpath(10.0), min_residency=10.0
        ),
        simulator.policies.Policy(
            "LRU", simulator.policies.greedy(simulator.policies.least_recently_used)
        ),
    ):
        outcome = simulator.simulation.simulate(tiny, trace, policy)
        assert outcome.cold_loads == 2 and outcome.timed_out == 0
        # The second model waits for the first to finish loading and serving (t = 6 s),
        # and for warmpath also to age past min_residency (t = 14 s), then loads for 4 s.
        expected = 14.0 + 4.0 - 1.0 if policy.min_residency else 6.0 + 4.0 - 1.0
        assert outcome.waits == [4.0, pytest.approx(expected, abs=1e-3)]


def test_held_out_traces_are_reported_apart_on_their_own_seeds(simulator: ModuleType) -> None:
    assert not {w.name for w in simulator.workloads.HELD_OUT} & {
        w.name for w in simulator.workloads.WORKLOADS
    }
    for workload in simulator.workloads.HELD_OUT:
        assert workload.trace(simulator.workloads.HELD_OUT_SEED, 0.1), workload.name
    text = simulator.report.held_out(1, 0.1)
    assert "### Held-out traces" in text
    assert all(f"| {w.name}: " in text for w in simulator.workloads.HELD_OUT)


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["--seeds", "0"], "--seeds must be at least 1"), (["--hours", "-1"], "--hours must be more")],
)
def test_nonsense_arguments_are_refused_by_name(
    placement: ModuleType,
    simulator: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    said: str,
) -> None:
    monkeypatch.setattr(sys, "argv", ["placement.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        placement.main()
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err
