"""Placement simulator: the agent's eviction policy against the usual alternatives.

Replays synthetic request traces through several policies and counts what each
costs: cold loads, seconds spent loading, the p99 time a request waits for its
model, and requests that fail. The "warmpath" policy is not a copy: it calls
warmpath_agent.eviction.plan_placement and demand.DemandTracker, the code the agent
runs, and it waits for room the way the agent's ResidencyManager does.

What the simulated system does with a request (every policy alike):

* model resident: served at once; loading: waits for the load to finish;
* not resident, and the policy can make room now: evicts, loads, waits for it;
* not resident, and nothing may be evicted *yet* (requests in flight, loads in
  progress, and for warmpath models resident for less than min_residency): the
  request waits for room, re-planned whenever a request ends, a load finishes
  or a model ages past min_residency, as the agent does. It gives up (the agent
  answers RESOURCE_EXHAUSTED) once its deadline no longer leaves time for the
  load plus a 1 s margin: the agent's rule;
* a model that could not fit even on an empty GPU is refused at once (never
  happens on these traces; there are no pinned models).

A failed request counts in the p99 wait as having waited its whole deadline: it
cost its caller that long and gave nothing. A request keeps its model busy (not
evictable) for SERVICE_SECONDS; a model serves any number of requests at once.

Policies: warmpath (the agent's eviction.py with its hot set, min_residency
10 s, its default), the same with its hot set recomputed from scratch at every
placement (no hysteresis), and without the hot set (cost only); LRU;
Ollama-style keep_alive (unload after 5 min idle) with LRU when memory is
short; largest-first (the incident's "smart switching"); and an offline
Belady-style policy that evicts the model whose next request is farthest away.
The order-based policies evict on the GPU whose last needed victim comes
earliest in their order (LRU: the least recently used models across GPUs).
The hindsight partition is not simulated but counted from the trace (see
hindsight_partition): the reference the hot set is the online form of.
Belady is the classic offline reference, not a proven bound here (variable sizes
and busy models make the true optimum NP-hard), but no online policy is expected
to beat it by much: when Belady itself is not far below LRU, the trace leaves
little for any policy to win.

Traces (each over 12 models; sizes and load times per trace below):

steady -- the original trace, unchanged: models of 1.5-20 GB (100.5 GB in all)
  whose load time grows with size (2 s + 0.8 s/GB), on 2 GPUs x 32 GB (1.6x more
  model than memory); Poisson arrivals at 1 req/s, popularity Zipf(1.6)
  reshuffled every 30 min, and every 5 min a sweep asking each of the 6 least
  popular models once, 2 s apart. Its working set per minute exceeds memory, so
  every policy cold-loads often.

sessions -- people (or agent loops) working with one model for a while: a
  session starts every 45 s on average (Poisson), picks its model by Zipf(1.0)
  popularity (reshuffled every 2 h), lasts 15 min on average (exponential), and
  sends a request every 20 s on average (Poisson; think time). About 20
  sessions overlap, over 8-9 distinct models: more than the 3 GPUs x 24 GB
  (72 GB) hold, so sessions compete for memory. Load times differ by runtime,
  as in the incidents (MIXED_LOAD_SECONDS).

sweeps -- a hot set plus the incidents' periodic jobs: 0.5 req/s of Poisson
  traffic with Zipf(1.2) popularity (reshuffled every hour), and every 10 min a
  health check / batch job that asks *every* model once, in turn, 3 s apart
  (the incident where health checks loaded models in turn and evicted each
  other). 4 GPUs x 20 GB (80 GB for 100.5 GB of models; the 20 GB model needs
  a GPU to itself). MIXED_LOAD_SECONDS.

incidents -- 5 hot models at 0.5 req/s, a team's bursts of 10 requests on the
  20 GB, 100 s model (the incident's 98 s cold start) every 10 min on average,
  health checks asking 3 idle models once each every 5 min, and the 3 remaining
  models about twice an hour. 2 GPUs x 32 GB. MIXED_LOAD_SECONDS.

Held-out traces (HELD_OUT: variations of the above, and a slow popularity
drift) were never used to tune the policy and run on other seeds; the results
report them apart. The first five were written after the hot set was frozen;
its hysteresis was chosen with their results in view, so the next three were
written then, before any result on them, to hold out for it; likewise the last
three (batch jobs, cron, four teams) for the hot set's time-averaged demand.

MIXED_LOAD_SECONDS: half the models on a vLLM-like runtime (20 s start-up and
CUDA-graph capture + 4 s/GB: the 20 GB one takes 100 s, like the incident's
98 s cold start), half on an Ollama/llama.cpp-like one (2 s + 0.9 s/GB), so
that a large model is not always the slow one.

The incident reports' hosts, with models bigger than one GPU (split, tensor
parallel, offload), are placement_hosts.py's scenarios, run last (--hosts-only: alone).

    .venv/bin/python bench/placement.py [--seeds 5] [--hosts-only] [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from simulator.hindsight import (
    HINDSIGHT,
)
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
from simulator.replay import (
    Results,
    run,
)
from simulator.simulation import (
    DEADLINE_SECONDS,
    Outcome,
    simulate,
)
from simulator.workloads import (
    HELD_OUT,
    HELD_OUT_SEED,
    WORKLOADS,
)

MIN_RESIDENCY_SWEEP = (0.0, 10.0, 30.0, 60.0)
TARGET_VS_LRU = 0.6
HOSTS_HEADING = "## Incident hosts"


def _median(outcomes: Sequence[Outcome], figure: Callable[[Outcome], float]) -> float:
    return statistics.median(figure(o) for o in outcomes)


def _cold(outcomes: Sequence[Outcome]) -> float:
    return _median(outcomes, lambda o: o.cold_loads)


def _failed(outcomes: Sequence[Outcome]) -> float:
    return _median(outcomes, lambda o: o.timed_out + o.refused)


def table(results: Results, seeds: int, seconds: float) -> str:
    lines = [
        "## Placement (gpu-agent eviction policy)",
        "",
        f"`.venv/bin/python bench/placement.py --seeds {seeds}`: simulated (took {seconds:.0f} s); "
        f"median over {seeds} seeds; ratios against LRU on the same traces. Traces, policies "
        "and what the simulated system does are described in bench/placement.py's docstring: "
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
        lru_load = _median(by_policy[LRU], lambda o: o.load_seconds)
        lines += [
            "",
            f"### {workload.name}: {workload.summary}",
            "",
            "| policy | cold loads | vs LRU | load-seconds | vs LRU | p99 wait (s) | failed |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, outcomes in by_policy.items():
            cold = _cold(outcomes)
            load = _median(outcomes, lambda o: o.load_seconds)
            timed = name != HINDSIGHT
            p99 = f"{_median(outcomes, lambda o: o.p99_wait):.1f}" if timed else "-"
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
        f"{HELD_OUT_SEED} to {HELD_OUT_SEED + seeds - 1}; bench/placement.py's HELD_OUT): "
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
        load = _median(ours, lambda o: o.load_seconds) / _median(lru, lambda o: o.load_seconds)
        p99 = [_median(o, lambda o: o.p99_wait) for o in (ours, lru)]
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
                f"{_median(outcomes, lambda o: o.p99_wait):.0f} / "
                f"{_failed(outcomes):.0f}"
            )
        lines.append(f"| {seconds:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def incident_hosts(seeds: int, hours: float | None = None) -> str:
    """Issue 18's hosts, with models bigger than one GPU (bench/placement_hosts.py)."""
    # Imported here: placement_hosts builds on this module (a top-level import would cycle).
    from placement_hosts import hosts_table, run_hosts  # noqa: PLC0415

    started = time.monotonic()
    results = run_hosts(seeds, hours)
    command = " ".join([".venv/bin/python bench/placement.py", *sys.argv[1:]])
    return hosts_table(results, seeds, hours, command, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="traces per workload (>= 1)")
    parser.add_argument("--hours", type=float, default=None, help="shorten every trace (> 0)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--hosts-only", action="store_true", help="only the incident hosts (placement_hosts.py)"
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, not {args.seeds}")
    if args.hours is not None and not args.hours > 0:
        parser.error(f"--hours must be more than 0, not {args.hours:g}")
    started = time.monotonic()
    text = ""
    if not args.hosts_only:
        results = run(args.seeds, args.hours)
        text = table(results, args.seeds, time.monotonic() - started) + verdict(results)
        text += held_out(args.seeds, args.hours)
        text += residency_tradeoff(args.seeds, args.hours)
    text += incident_hosts(args.seeds, args.hours)
    print(text)
    if args.out is not None:
        if args.hosts_only and args.out.exists():
            # Keep the other sections: only the incident hosts' is rewritten.
            kept = args.out.read_text().split(HOSTS_HEADING)[0].rstrip("\n")
            text = f"{kept}\n{text}"
        args.out.write_text(text)


if __name__ == "__main__":
    main()
