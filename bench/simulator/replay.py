"""Every workload's traces through every policy (and the hindsight reference), one seed
after another, collected per policy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from simulator.hindsight import HINDSIGHT, hindsight_partition
from simulator.policies import policies
from simulator.simulation import Outcome, simulate
from simulator.traces import Request, Workload
from simulator.workloads import WORKLOADS

Results = dict[str, dict[str, list[Outcome]]]
"""workload name -> policy name -> one outcome per seed."""


def replay(
    workloads: Sequence[Workload],
    seeds: int,
    first_seed: int,
    hours: float | None,
    outcomes: Callable[[Workload, list[Request]], Iterable[tuple[str, Outcome]]],
) -> Results:
    """Each workload's traces (seeds `first_seed` and up) through `outcomes`, which says
    what each policy (or reference) did on one trace; collected per policy, a seed each."""
    results: Results = {}
    for workload in workloads:
        by_policy = results.setdefault(workload.name, {})
        for seed in range(first_seed, first_seed + seeds):
            for name, outcome in outcomes(workload, workload.trace(seed, hours)):
                by_policy.setdefault(name, []).append(outcome)
    return results


def run(
    seeds: int,
    hours: float | None = None,
    workloads: Sequence[Workload] = WORKLOADS,
    first_seed: int = 0,
) -> Results:
    return replay(workloads, seeds, first_seed, hours, _policies_and_hindsight)


def _policies_and_hindsight(
    workload: Workload, trace: list[Request]
) -> Iterator[tuple[str, Outcome]]:
    for policy in policies(trace):
        yield policy.name, simulate(workload, trace, policy)
    cold, seconds = hindsight_partition(workload, trace)
    yield HINDSIGHT, Outcome(cold, seconds)
