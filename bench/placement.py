"""Placement simulator: the agent's eviction policy against the usual alternatives.

Replays one synthetic request trace per seed through several policies and
counts what each costs: cold loads, seconds spent loading, and the p99 time a
request waits for its model. The "warmpath" policy is not a copy: it calls
warmpath_agent.eviction.plan_placement and DemandTracker, the code the agent
runs.

Trace (per seed): 12 models of 1.5-20 GB (100 GB in all) whose load time grows
with size, over 2 GPUs of 32 GB (about 1.6x more model than memory); Poisson
arrivals at 1 request/s for 4 simulated hours, model popularity Zipf(1.6)
reshuffled every 30 minutes, and every 5 minutes a sweep that asks each of the 6
least popular models once, 2 s apart: the seeds' health checks and batch jobs
that touch every model. A request keeps its model busy (not evictable) for 2 s.

When no policy-permitted eviction makes room, the agent answers
RESOURCE_EXHAUSTED (the router falls back or fails): the simulator counts those
requests as refused rather than letting them wait.

    .venv/bin/python bench/placement.py [--seeds 5] [--out bench/results/placement.md]
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from warmpath_agent.eviction import DemandTracker, GpuRoom, NoRoom, ResidentModel, plan_placement

GB = 1024**3
SIZES_GB = (1.5, 2, 3, 4, 5, 6, 8, 9, 12, 14, 16, 20)
GPU_GB = (32, 32)
HOURS = 4.0
RATE_PER_SECOND = 1.0
ZIPF_EXPONENT = 1.6
SWEEP_EVERY_SECONDS = 300.0
SWEEP_MODELS = 6
SERVICE_SECONDS = 2.0
KEEP_ALIVE_SECONDS = 300.0  # Ollama's default keep_alive
AGENT_MIN_RESIDENCY_SECONDS = 10.0  # the agent's default
MIN_RESIDENCY_SWEEP = (0.0, 5.0, 10.0, 30.0, 60.0)


def load_seconds(size_gb: float) -> float:
    return 2.0 + 0.8 * size_gb


@dataclass(frozen=True)
class Request:
    at: float
    model: int
    sweep: bool = False


def make_trace(seed: int) -> list[Request]:
    rng = random.Random(seed)
    models = list(range(len(SIZES_GB)))
    weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(models))]
    requests: list[Request] = []
    now = 0.0
    end = HOURS * 3600
    order = models[:]
    next_shuffle = 0.0
    next_sweep = SWEEP_EVERY_SECONDS
    while now < end:
        if now >= next_shuffle:
            rng.shuffle(order)
            next_shuffle += 1800
        if now >= next_sweep:
            tail = order[-SWEEP_MODELS:]
            requests.extend(Request(now + 2.0 * i, model, True) for i, model in enumerate(tail))
            next_sweep += SWEEP_EVERY_SECONDS
        requests.append(Request(now, rng.choices(order, weights)[0]))
        now += rng.expovariate(RATE_PER_SECOND)
    requests.sort(key=lambda r: r.at)
    return requests


@dataclass
class Loaded:
    model: int
    gpu: int
    ready_at: float
    last_used: float
    busy_until: float


@dataclass
class Outcome:
    cold_loads: int = 0
    load_seconds: float = 0.0
    refused: int = 0
    """Requests refused because nothing could be evicted yet (RESOURCE_EXHAUSTED)."""
    refused_sweep: int = 0
    waits: list[float] = field(default_factory=list)

    @property
    def p99_wait(self) -> float:
        return statistics.quantiles(self.waits, n=100)[98]


# A policy picks (gpu, victims) for a model that must be loaded, or None.
Chooser = Callable[["Cluster", int, float], tuple[int, list[int]] | None]


@dataclass
class Cluster:
    loaded: dict[int, Loaded] = field(default_factory=dict)
    trace: list[Request] = field(default_factory=list)
    demand: DemandTracker = field(default_factory=DemandTracker)

    def free(self, gpu: int) -> int:
        used = sum(int(SIZES_GB[m.model] * GB) for m in self.loaded.values() if m.gpu == gpu)
        return int(GPU_GB[gpu] * GB) - used

    def evictable(self, gpu: int, now: float) -> list[Loaded]:
        return [
            m
            for m in self.loaded.values()
            if m.gpu == gpu and m.busy_until <= now and m.ready_at <= now
        ]


def greedy(order: Callable[[Loaded], float]) -> Chooser:
    """Evict in `order` (smallest key first) on the GPU needing the fewest victims."""

    def choose(cluster: Cluster, model: int, now: float) -> tuple[int, list[int]] | None:
        need = int(SIZES_GB[model] * GB)
        fits = [g for g in range(len(GPU_GB)) if cluster.free(g) >= need]
        if fits:
            return max(fits, key=cluster.free), []
        best: tuple[int, list[int]] | None = None
        for gpu in range(len(GPU_GB)):
            freed, victims = cluster.free(gpu), []
            for candidate in sorted(cluster.evictable(gpu, now), key=order):
                if freed >= need:
                    break
                victims.append(candidate.model)
                freed += int(SIZES_GB[candidate.model] * GB)
            if freed >= need and (best is None or len(victims) < len(best[1])):
                best = (gpu, victims)
        return best

    return choose


def warmpath(min_residency_seconds: float) -> Chooser:
    def choose(cluster: Cluster, model: int, now: float) -> tuple[int, list[int]] | None:
        return _warmpath(cluster, model, now, min_residency_seconds)

    return choose


def _warmpath(
    cluster: Cluster, model: int, now: float, min_residency_seconds: float
) -> tuple[int, list[int]] | None:
    rooms = [
        GpuRoom(
            gpu,
            cluster.free(gpu),
            tuple(
                ResidentModel(
                    model=str(m.model),
                    size_bytes=int(SIZES_GB[m.model] * GB),
                    load_seconds=load_seconds(SIZES_GB[m.model]),
                    demand_per_minute=cluster.demand.per_minute(str(m.model), now),
                    last_used=m.last_used,
                    resident_since=m.ready_at,
                    in_use=m.busy_until > now or m.ready_at > now,
                )
                for m in cluster.loaded.values()
                if m.gpu == gpu
            ),
        )
        for gpu in range(len(GPU_GB))
    ]
    plan = plan_placement(rooms, int(SIZES_GB[model] * GB), now, min_residency_seconds)
    if isinstance(plan, NoRoom):
        return None
    return plan.gpu_index, [int(v.model) for v in plan.victims]


def belady(next_use: dict[int, list[float]]) -> Chooser:
    def farthest(candidate: Loaded, now: float) -> float:
        uses = next_use[candidate.model]
        position = bisect.bisect_right(uses, now)
        return -(uses[position] if position < len(uses) else float("inf"))

    def choose(cluster: Cluster, model: int, now: float) -> tuple[int, list[int]] | None:
        return greedy(lambda c: farthest(c, now))(cluster, model, now)

    return choose


def simulate(trace: list[Request], choose: Chooser, keep_alive: float | None = None) -> Outcome:
    cluster = Cluster(trace=trace)
    outcome = Outcome()
    for request in trace:
        now = request.at
        if keep_alive is not None:
            for m in list(cluster.loaded.values()):
                if m.busy_until <= now and now - m.last_used > keep_alive:
                    del cluster.loaded[m.model]
        cluster.demand.record(str(request.model), now)
        resident = cluster.loaded.get(request.model)
        if resident is None:
            choice = choose(cluster, request.model, now)
            if choice is None:
                # Nothing may be evicted yet (busy, or resident too briefly): the
                # agent answers RESOURCE_EXHAUSTED and the router falls back or fails.
                outcome.refused += 1
                outcome.refused_sweep += request.sweep
                continue
            gpu, victims = choice
            for victim in victims:
                del cluster.loaded[victim]
            took = load_seconds(SIZES_GB[request.model])
            outcome.cold_loads += 1
            outcome.load_seconds += took
            resident = Loaded(request.model, gpu, now + took, now, now)
            cluster.loaded[request.model] = resident
        start = max(now, resident.ready_at)
        outcome.waits.append(start - request.at)
        resident.last_used = request.at
        resident.busy_until = max(resident.busy_until, start + SERVICE_SECONDS)
    return outcome


def run(seeds: int) -> list[tuple[str, list[Outcome]]]:
    results: dict[str, list[Outcome]] = {}
    for seed in range(seeds):
        trace = make_trace(seed)
        next_use: dict[int, list[float]] = {m: [] for m in range(len(SIZES_GB))}
        for request in trace:
            next_use[request.model].append(request.at)
        policies: list[tuple[str, Chooser, float | None]] = [
            (
                f"warmpath, min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s (agent default)",
                warmpath(AGENT_MIN_RESIDENCY_SECONDS),
                None,
            ),
            ("LRU", greedy(lambda c: c.last_used), None),
            ("keep_alive expiry (5 min) + LRU", greedy(lambda c: c.last_used), KEEP_ALIVE_SECONDS),
            ("largest first", greedy(lambda c: -SIZES_GB[c.model]), None),
            ("Belady-style offline (evicts the farthest next use)", belady(next_use), None),
        ]
        for name, choose, keep_alive in policies:
            results.setdefault(name, []).append(simulate(trace, choose, keep_alive))
    return list(results.items())


def table(results: list[tuple[str, list[Outcome]]], seeds: int, seconds: float) -> str:
    lru = statistics.median(o.cold_loads for o in dict(results)["LRU"])
    lru_load = statistics.median(o.load_seconds for o in dict(results)["LRU"])
    lines = [
        "## Placement (gpu-agent eviction policy)",
        "",
        f"`.venv/bin/python bench/placement.py --seeds {seeds}`: {len(SIZES_GB)} models "
        f"({min(SIZES_GB):g}-{max(SIZES_GB):g} GB), {len(GPU_GB)} GPUs x {GPU_GB[0]} GB, "
        f"{HOURS:g} h of Poisson traffic at {RATE_PER_SECOND:g} req/s, Zipf({ZIPF_EXPONENT:g}) "
        "popularity reshuffled every 30 min, and every 5 min a sweep asking each of the 6 least "
        "popular models once (the seeds' health checks and batch jobs). Refused: no permitted "
        "eviction made room (RESOURCE_EXHAUSTED). Median over "
        f"{seeds} seeds (simulated; took {seconds:.0f} s). "
        "Ratios are against LRU on the same traces.",
        "",
        "| policy | cold loads | vs LRU | load-seconds | vs LRU | refused (of them sweep) "
        "| p99 wait (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, outcomes in results:
        cold = statistics.median(o.cold_loads for o in outcomes)
        load = statistics.median(o.load_seconds for o in outcomes)
        p99 = statistics.median(o.p99_wait for o in outcomes)
        refused = statistics.median(o.refused for o in outcomes)
        refused_sweep = statistics.median(o.refused_sweep for o in outcomes)
        lines.append(
            f"| {name} | {cold:.0f} | {cold / lru:.2f}x | {load:.0f} | {load / lru_load:.2f}x "
            f"| {refused:.0f} ({refused_sweep:.0f}) | {p99:.1f} |"
        )
    return "\n".join(lines) + "\n"


def residency_tradeoff(seeds: int) -> str:
    """Cold loads bought with refusals: the min_residency knob, on the same traces."""
    traces = [make_trace(seed) for seed in range(seeds)]
    lru = [simulate(trace, greedy(lambda c: c.last_used)) for trace in traces]
    lru_cold = statistics.median(o.cold_loads for o in lru)
    lines = [
        "",
        "`agent.min_residency_seconds` trades cold loads for refusals under memory pressure "
        f"(LRU on the same traces: {lru_cold:.0f} cold loads, "
        f"{statistics.median(o.refused for o in lru):.0f} refused):",
        "",
        "| min_residency (s) | cold loads vs LRU | refused |",
        "|---:|---:|---:|",
    ]
    for seconds in MIN_RESIDENCY_SWEEP:
        outcomes = [simulate(trace, warmpath(seconds)) for trace in traces]
        cold = statistics.median(o.cold_loads for o in outcomes)
        refused = statistics.median(o.refused for o in outcomes)
        lines.append(f"| {seconds:g} | {cold / lru_cold:.2f}x | {refused:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.monotonic()
    results = run(args.seeds)
    text = table(results, args.seeds, time.monotonic() - started) + residency_tradeoff(args.seeds)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
