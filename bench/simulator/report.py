"""The report: the tables (against LRU, per trace and per policy), the result in words,
the held-out traces and what min_residency trades."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from simulator.hindsight import HINDSIGHT
from simulator.policies import (
    BELADY,
    LRU,
    WARMPATH,
    WARMPATH_CONDITIONAL_HOT_SET,
    WARMPATH_NO_HOT_SET,
    WARMPATH_NO_HYSTERESIS,
    Policy,
    greedy,
    least_recently_used,
    warmpath,
)
from simulator.replay import Results, run
from simulator.simulation import DEADLINE_SECONDS, Outcome, simulate
from simulator.workloads import HELD_OUT, HELD_OUT_SEED, WORKLOADS

MIN_RESIDENCY_SWEEP = (0.0, 10.0, 30.0, 60.0)
TARGET_VS_LRU = 0.6


def median(outcomes: Sequence[Outcome], figure: Callable[[Outcome], float]) -> float:
    return statistics.median(figure(o) for o in outcomes)


def _cold(outcomes: Sequence[Outcome]) -> float:
    return median(outcomes, lambda o: o.cold_loads)


def _failed(outcomes: Sequence[Outcome]) -> float:
    return median(outcomes, lambda o: o.timed_out + o.refused)


def table(results: Results, seeds: int, seconds: float) -> str:
    lines = [
        "## Placement (gpu-agent eviction policy)",
        "",
        f"`.venv/bin/python bench/placement.py --seeds {seeds}`: simulated (took {seconds:.0f} s); "
        f"median over {seeds} seeds; ratios against LRU on the same traces. Traces, policies "
        "and what the simulated system does are described in docs/benchmarks.md: "
        "a request that finds no room waits for it as the agent does (counted in its wait) and "
        f"fails only when its {DEADLINE_SECONDS:g} s deadline no longer leaves time to load; "
        "a failed request counts in p99 wait as the whole deadline.",
        "",
        f"Target (issue 3, item 7): warmpath <= {TARGET_VS_LRU:g}x LRU's cold loads.",
        "",
        "| trace | warmpath vs LRU (cold loads) | Belady-style offline vs LRU "
        "| hindsight partition vs LRU | target met |",
        "|---|---:|---:|---:|---|",
    ]
    for name, by_policy in results.items():
        lru = _cold(by_policy[LRU])
        ours = _cold(by_policy[WARMPATH]) / lru
        offline = _cold(by_policy[BELADY]) / lru
        hindsight = _cold(by_policy[HINDSIGHT]) / lru if HINDSIGHT in by_policy else math.nan
        met = "yes" if ours <= TARGET_VS_LRU else "no"
        lines.append(f"| {name} | {ours:.2f}x | {offline:.2f}x | {hindsight:.2f}x | {met} |")
    for workload in WORKLOADS:
        by_policy = results[workload.name]
        lru = _cold(by_policy[LRU])
        lru_load = median(by_policy[LRU], lambda o: o.load_seconds)
        lines += [
            "",
            f"### {workload.name}: {workload.summary}",
            "",
            "| policy | cold loads | vs LRU | load-seconds | vs LRU | p99 wait (s) | failed |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, outcomes in by_policy.items():
            cold = _cold(outcomes)
            load = median(outcomes, lambda o: o.load_seconds)
            timed = name != HINDSIGHT
            p99 = f"{median(outcomes, lambda o: o.p99_wait):.1f}" if timed else "-"
            failed = f"{_failed(outcomes):.0f}" if timed else "-"
            lines.append(
                f"| {name} | {cold:.0f} | {cold / lru:.2f}x | {load:.0f} | {load / lru_load:.2f}x "
                f"| {p99} | {failed} |"
            )
    return "\n".join(lines) + "\n"


def verdict(results: Results) -> str:
    """The result in words, from the figures above (so that it cannot go stale)."""
    ours, conditional, unstable, without, offline, hindsight = {}, {}, {}, {}, {}, {}
    for name, by_policy in results.items():
        lru = _cold(by_policy[LRU])
        ours[name] = _cold(by_policy[WARMPATH]) / lru
        conditional[name] = _cold(by_policy[WARMPATH_CONDITIONAL_HOT_SET]) / lru
        unstable[name] = _cold(by_policy[WARMPATH_NO_HYSTERESIS]) / lru
        without[name] = _cold(by_policy[WARMPATH_NO_HOT_SET]) / lru
        offline[name] = _cold(by_policy[BELADY]) / lru
        hindsight[name] = _cold(by_policy[HINDSIGHT]) / lru
    met = [name for name, value in ours.items() if value <= TARGET_VS_LRU]
    missed = [name for name in ours if name not in met]

    def listed(names: Sequence[str], figures: dict[str, float]) -> str:
        return ", ".join(f"{name} {figures[name]:.2f}x" for name in names)

    lines = [
        "",
        f"**Result.** At the agent's defaults, warmpath meets <= {TARGET_VS_LRU:g}x LRU's cold "
        f"loads on {len(met)} of these {len(ours)} traces"
        + (f" ({listed(met, ours)})" if met else "")
        + (f" and misses it on {listed(missed, ours)}" if missed else "")
        + ". With its hot set ranked by the conditional wait for the next request alone (not "
        f"also its time average) it needs {listed(list(conditional), conditional)}; with it "
        "also recomputed from scratch at every placement (no hysteresis), "
        f"{listed(list(unstable), unstable)}; without a hot set, on cost alone, "
        f"{listed(list(without), without)}. "
        "The hot set is the online form of the hindsight partition (the best hot set per "
        "10-minute window, chosen knowing that window's requests: "
        f"{listed(list(hindsight), hindsight)}); that reference ignores time (instant loads, "
        "no overlapping requests), so it shows what partitioning can win rather than bounding "
        "it. The Belady-style offline policy evicts one model at a time by next use and "
        f"reaches {listed(list(offline), offline)}. The hot set buys its cold loads partly "
        "with waiting: a request for a model outside it waits (within its deadline) for "
        "memory other such models hold rather than evict a hot model, so p99 waits run "
        "longer than LRU's where requests for rare models arrive while others are loading.",
    ]
    return "\n".join(lines) + "\n"


def held_out(seeds: int, hours: float | None = None) -> str:
    """The agent's policy against LRU and the references on the HELD_OUT traces."""
    lines = [
        "",
        "### Held-out traces",
        "",
        "Traces never used to tune the policy, run on their own seeds (seeds "
        f"{HELD_OUT_SEED} to {HELD_OUT_SEED + seeds - 1}; "
        "bench/simulator/workloads.py's HELD_OUT): "
        "does what it wins above carry over? The first five were written after the hot set "
        "was frozen. Its hysteresis came later, chosen with their results in view, so for "
        "the hysteresis only the next three are held out: they were written when it was "
        "chosen, before any result on them. The time-averaged demand came last, with those "
        "eight in view: batch jobs and cron were written before any result on them but were "
        "run while choosing its form (the time average alone, or the shorter of the two "
        "waits), and four teams was written after that, before any result on it. Warmpath at "
        "its defaults; medians over the seeds.",
        "",
        "| trace | warmpath vs LRU (cold loads) | hot set by the conditional wait "
        "| without hysteresis | without the hot set "
        "| load-seconds vs LRU | Belady-style vs LRU (cold loads) | hindsight partition vs LRU "
        "| p99 wait warmpath / LRU (s) | failed warmpath / LRU | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    results = run(seeds, hours, HELD_OUT, HELD_OUT_SEED)
    figures = {}
    more_failed = 0
    for workload in HELD_OUT:
        by_policy = results[workload.name]
        ours, lru = by_policy[WARMPATH], by_policy[LRU]
        cold = {name: _cold(outcomes) / _cold(lru) for name, outcomes in by_policy.items()}
        figures[workload.name] = cold[WARMPATH]
        more_failed += _failed(ours) > _failed(lru)
        load = median(ours, lambda o: o.load_seconds) / median(lru, lambda o: o.load_seconds)
        p99 = [median(o, lambda o: o.p99_wait) for o in (ours, lru)]
        met = "yes" if cold[WARMPATH] <= TARGET_VS_LRU else "no"
        lines.append(
            f"| {workload.name}: {workload.summary} | {cold[WARMPATH]:.2f}x "
            f"| {cold[WARMPATH_CONDITIONAL_HOT_SET]:.2f}x "
            f"| {cold[WARMPATH_NO_HYSTERESIS]:.2f}x | {cold[WARMPATH_NO_HOT_SET]:.2f}x "
            f"| {load:.2f}x | {cold[BELADY]:.2f}x "
            f"| {cold[HINDSIGHT]:.2f}x | {p99[0]:.1f} / {p99[1]:.1f} "
            f"| {_failed(ours):.0f} / {_failed(lru):.0f} | {met} |"
        )
    met_on = sum(value <= TARGET_VS_LRU for value in figures.values())
    lines += [
        "",
        f"On the held-out traces warmpath takes {min(figures.values()):.2f}x to "
        f"{max(figures.values()):.2f}x LRU's cold loads: the target is met on {met_on} of "
        f"{len(figures)}. It fails more requests than LRU (median over the seeds) on "
        f"{more_failed} of them: under this much pressure a request that finds every model "
        "in its way in use or younger than min_residency can wait out its deadline, where "
        "LRU would evict a model it has just loaded.",
    ]
    return "\n".join(lines) + "\n"


def residency_tradeoff(seeds: int, hours: float | None = None) -> str:
    """What `agent.min_residency_seconds` buys: fewer cold loads, against longer waits."""
    lines = [
        "",
        "`agent.min_residency_seconds` on the same traces: a longer floor protects what was "
        "just loaded (fewer cold loads) but makes requests for other models wait longer for "
        "room. Cold loads vs LRU / p99 wait (s) / failed:",
        "",
        "| min_residency (s) | " + " | ".join(w.name for w in WORKLOADS) + " |",
        "|---:|" + "---:|" * len(WORKLOADS),
    ]
    traces = {w.name: [w.trace(seed, hours) for seed in range(seeds)] for w in WORKLOADS}
    lru = {
        w.name: _cold(
            [simulate(w, t, Policy(LRU, greedy(least_recently_used))) for t in traces[w.name]]
        )
        for w in WORKLOADS
    }
    for seconds in MIN_RESIDENCY_SWEEP:
        policy = Policy(f"warmpath {seconds:g}", warmpath(seconds), min_residency=seconds)
        cells = []
        for workload in WORKLOADS:
            outcomes = [simulate(workload, t, policy) for t in traces[workload.name]]
            cells.append(
                f"{_cold(outcomes) / lru[workload.name]:.2f}x / "
                f"{median(outcomes, lambda o: o.p99_wait):.0f} / "
                f"{_failed(outcomes):.0f}"
            )
        lines.append(f"| {seconds:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
