"""Synthetic request traces: a request, a workload (its models, its GPUs, how its trace
is made), and the generators the workloads are built from (Poisson traffic by Zipf
popularity, sessions, sweeps, teams' bursts, drift, batch jobs, cron). The named
workloads are in workloads.py; what each trace models: docs/benchmarks.md."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

SIZES_GB = (1.5, 2, 3, 4, 5, 6, 8, 9, 12, 14, 16, 20)
STEADY_LOAD_SECONDS = tuple(2.0 + 0.8 * size for size in SIZES_GB)
# Half the models on a vLLM-like runtime (slow start-up), half on a llama.cpp-like one.
MIXED_LOAD_SECONDS = tuple(
    20.0 + 4.0 * size if rank % 2 else 2.0 + 0.9 * size for rank, size in enumerate(SIZES_GB)
)


@dataclass(frozen=True)
class Request:
    at: float
    model: int


@dataclass(frozen=True)
class Workload:
    name: str
    sizes_gb: tuple[float, ...]
    load_seconds: tuple[float, ...]
    gpu_gb: tuple[float, ...]
    hours: float
    summary: str
    make_trace: Callable[[random.Random, float], list[Request]]

    def trace(self, seed: int, hours: float | None = None) -> list[Request]:
        requests = self.make_trace(random.Random(seed), (hours or self.hours) * 3600)
        return sorted(requests, key=lambda r: r.at)


def zipf_weights(count: int, exponent: float) -> list[float]:
    return [1 / (rank + 1) ** exponent for rank in range(count)]


def steady_trace(rng: random.Random, end: float) -> list[Request]:
    def sweep(now: float, order: list[int]) -> list[Request]:
        return [Request(now + 2.0 * i, m) for i, m in enumerate(order[-6:])]

    return popular_traffic(rng, end, 1.6, 1.0, 1800, 300, sweep)


def popular_traffic(
    rng: random.Random,
    end: float,
    exponent: float,
    per_second: float,
    reshuffle_every: float,
    every: float,
    burst: Callable[[float, list[int]], list[Request]],
) -> list[Request]:
    """Poisson traffic at `per_second` over the models by Zipf(`exponent`) popularity (their
    order reshuffled every `reshuffle_every` s), and every `every` s the requests
    `burst(now, order)` adds (order: the models, most popular first)."""
    weights = zipf_weights(len(SIZES_GB), exponent)
    order = list(range(len(weights)))
    requests: list[Request] = []
    now, next_shuffle, next_burst = 0.0, 0.0, every
    while now < end:
        if now >= next_shuffle:
            rng.shuffle(order)
            next_shuffle += reshuffle_every
        if now >= next_burst:
            requests.extend(burst(now, order))
            next_burst += every
        requests.append(Request(now, rng.choices(order, weights)[0]))
        now += rng.expovariate(per_second)
    return requests


def sessions_trace(
    rng: random.Random,
    end: float,
    *,
    exponent: float = 1.0,
    reshuffle_every: float = 7200,
    session_seconds: float = 900,
    think_seconds: float = 20,
    session_every: float = 45,
) -> list[Request]:
    models = list(range(len(SIZES_GB)))
    weights = zipf_weights(len(models), exponent)
    order = models[:]
    next_shuffle = 0.0

    def pick(now: float) -> int:
        nonlocal next_shuffle
        if now >= next_shuffle:
            rng.shuffle(order)
            next_shuffle += reshuffle_every
        return rng.choices(order, weights)[0]

    return sessions(
        rng, end, pick, every=session_every, length=session_seconds, think=think_seconds
    )


def sessions(
    rng: random.Random,
    end: float,
    pick: Callable[[float], int],
    *,
    every: float,
    length: float,
    think: float,
) -> list[Request]:
    """A session every `every` s on average, on the model `pick(start)` gives, lasting
    `length` s on average, with a request every `think` s on average."""
    requests: list[Request] = []
    now = 0.0
    while now < end:
        model = pick(now)
        stop = min(end, now + rng.expovariate(1 / length))
        at = now
        while at < stop:
            requests.append(Request(at, model))
            at += rng.expovariate(1 / think)
        now += rng.expovariate(1 / every)
    return requests


def sweeps_trace(
    rng: random.Random,
    end: float,
    *,
    exponent: float = 1.2,
    reshuffle_every: float = 3600,
    sweep_every: float = 600,
    sweep_spacing: float = 3.0,
    per_second: float = 0.5,
) -> list[Request]:
    models = list(range(len(SIZES_GB)))

    def sweep(now: float, order: list[int]) -> list[Request]:
        return [Request(now + sweep_spacing * i, m) for i, m in enumerate(rng.sample(models, 12))]

    return popular_traffic(rng, end, exponent, per_second, reshuffle_every, sweep_every, sweep)


@dataclass(frozen=True)
class Team:
    """A team's bursts on one model: `requests` of them `spacing` s apart, then a pause of
    `pause` s plus an exponential one averaging `mean_gap` s."""

    model: int
    mean_gap: float
    requests: int
    spacing: float
    pause: float


def incidents_trace(
    rng: random.Random,
    end: float,
    *,
    teams: tuple[Team, ...] = (Team(len(SIZES_GB) - 1, 480, 10, 12.0, 120),),
    hot_models: int = 5,
    hot_per_second: float = 0.5,
    checked_models: int = 3,
    check_every: int = 300,
    check_spacing: float = 5.0,
    tail_gap: float = 1800,
) -> list[Request]:
    """The default team's model is the 20 GB, 100 s one: the incident's 98 s cold start."""
    models = list(range(len(SIZES_GB)))
    team_models = {team.model for team in teams}
    hot = rng.sample([m for m in models[:9] if m not in team_models], hot_models)
    rest = [m for m in models if m not in team_models and m not in hot]
    checked = rng.sample(rest, checked_models)
    tail = [m for m in rest if m not in checked]
    requests: list[Request] = []
    weights = zipf_weights(len(hot), 1.0)
    now = 0.0
    while now < end:
        requests.append(Request(now, rng.choices(hot, weights)[0]))
        now += rng.expovariate(hot_per_second)
    for team in teams:
        now = rng.expovariate(1 / team.mean_gap)
        while now < end:
            requests.extend(
                Request(now + team.spacing * i, team.model) for i in range(team.requests)
            )
            now += team.pause + rng.expovariate(1 / team.mean_gap)
    for start in range(check_every, int(end), check_every):
        requests.extend(Request(start + check_spacing * i, m) for i, m in enumerate(checked))
    for model in tail:
        now = rng.expovariate(1 / tail_gap)
        while now < end:
            requests.append(Request(now, model))
            now += rng.expovariate(1 / tail_gap)
    return requests


def drift_trace(rng: random.Random, end: float) -> list[Request]:
    """Popularity that drifts rather than jumps: every hour two models swap ranks."""
    models = list(range(len(SIZES_GB)))
    weights = zipf_weights(len(models), 1.4)
    order = models[:]
    rng.shuffle(order)
    requests: list[Request] = []
    now, next_swap = 0.0, 3600.0
    while now < end:
        if now >= next_swap:
            first, second = rng.sample(range(len(order)), 2)
            order[first], order[second] = order[second], order[first]
            next_swap += 3600
        requests.append(Request(now, rng.choices(order, weights)[0]))
        now += rng.expovariate(0.7)
    return requests


def batch_trace(
    rng: random.Random,
    end: float,
    *,
    exponent: float = 1.1,
    per_second: float = 0.4,
    reshuffle_every: float = 7200,
    batch_every: float = 900,
    batch_requests: int = 30,
    batch_spacing: float = 2.0,
) -> list[Request]:
    """Interactive traffic plus batch jobs: every `batch_every` s a job sends
    `batch_requests` requests, `batch_spacing` s apart, to one of the six models
    least popular at the time."""

    def batch(now: float, order: list[int]) -> list[Request]:
        model = rng.choice(order[-6:])
        return [Request(now + batch_spacing * i, model) for i in range(batch_requests)]

    return popular_traffic(rng, end, exponent, per_second, reshuffle_every, batch_every, batch)


def cron_trace(
    rng: random.Random,
    end: float,
    *,
    periods: tuple[float, ...] = (600, 900, 1200),
    burst_requests: int = 5,
    burst_spacing: float = 3.0,
    exponent: float = 1.2,
    per_second: float = 0.5,
) -> list[Request]:
    """Scheduled jobs on fixed periods (a burst on one model each, at a random phase)
    plus Poisson traffic, Zipf(`exponent`), over the other models."""
    models = list(range(len(SIZES_GB)))
    scheduled = rng.sample(models, len(periods))
    interactive = [m for m in models if m not in scheduled]
    rng.shuffle(interactive)
    weights = zipf_weights(len(interactive), exponent)
    requests: list[Request] = []
    for model, period in zip(scheduled, periods, strict=True):
        start = rng.uniform(0, period)
        while start < end:
            requests.extend(
                Request(start + burst_spacing * i, model) for i in range(burst_requests)
            )
            start += period
    now = 0.0
    while now < end:
        requests.append(Request(now, rng.choices(interactive, weights)[0]))
        now += rng.expovariate(per_second)
    return requests
