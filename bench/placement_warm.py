"""The warm tier in the placement simulator: evicted models sleep in host RAM and wake
in seconds, instead of reloading from disk (issue 22, docs/warm-tier.md).

Same traces, same simulated system as bench/placement.py (the tier's simulation:
bench/simulator/warm_tier.py); what changes:

* an evicted model goes to sleep when warmpath_agent.warm_tier.choose_demotion says so
  (the agent's own rule: waking must beat loading, and host RAM must have room, made
  if need be by unloading sleepers worth less per byte), else it is unloaded;
* a request for a sleeping model waits for GPU room as for a load, then for its wake
  instead of its load; a wake is not a cold load, and its seconds are counted apart;
* the warmpath policy values a resident by what bringing it back would cost, by the
  agent's warm_tier.return_seconds: its wake when it would sleep, plus what the sleepers
  its sleep pushes out of host RAM lose (its load when it would be unloaded); and a model
  outside the hot set no longer waits for room rather than evict hot-set models that
  would all sleep in free host RAM (warm_tier.sleeps_freely: they come back in a wake);
* Belady-style offline with the warm tier: the reference that knows the future, its
  evicted models demoted by the same rule.

Wake costs are the agent's estimates (warm_tier.estimated_wake_seconds), from the
published figures: vLLM's sleep mode level 1 wakes in 0.3-3 s against about 48 s per
cold switch, "18-200x faster" than a reload (vLLM blog, "Zero-Reload Model Switching
with vLLM Sleep Mode", 2025), modelled as 0.3 s + size at 8 GiB/s (a 20 GB model: 2.6
s); a llama.cpp reload served from the page cache instead of disk is reported at 1-2 s,
modelled as 1 s + size at 4 GiB/s (20 GB: 5.7 s, conservative for large models). In
MIXED_LOAD_SECONDS traces the slow-starting half is vLLM-like, the rest llama.cpp-like;
the steady trace (2 s + 0.8 s/GB) is llama.cpp-like throughout.

A sleeping vLLM-like server keeps some GPU memory (CUDA context, allocator pools, CUDA
graphs): the agent's estimate where nothing is measured, a tenth of what it held awake
(warm_tier.estimated_asleep_gpu_bytes; vLLM's documentation, "Sleep Mode": level 1
releases "up to 90%+ of GPU memory"). It stays on its GPU until the sleeper is unloaded;
the sleeper wakes only there, needing room for the rest; eviction counts on what a
victim that would sleep really frees (the agent's WarmTier.freed_by_eviction); and a
placement may unload a sleeper for what it keeps, priced at what it loses (a load
instead of a wake, as WarmHooks.as_victim), kept like the hot set
(warm_tier.kept_like_the_hot_set). A sleeper whose GPU has room only later than a load
from disk elsewhere would take is unloaded and loaded elsewhere, as the agent does
(warm_tier.room_in_seconds, moves_rather_than_waits). A llama.cpp-like sleeper keeps
nothing.

Host RAM for sleepers: HOST_RAM_PER_GPU_MEMORY x the host's GPU memory (1x by default:
64 GB beside 2 x 32 GB), with a tighter budget (0.25x) shown too.

    .venv/bin/python bench/placement_warm.py [--seeds 5] [--hours H] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from simulator.policies import (
    AGENT_MIN_RESIDENCY_SECONDS,
    BELADY,
    LRU,
    WARMPATH,
    Policy,
    belady,
    greedy,
    least_recently_used,
    warmpath,
)
from simulator.replay import Results, replay
from simulator.report import median
from simulator.simulation import Outcome, simulate
from simulator.traces import Request, Workload
from simulator.warm_tier import WarmOutcome, WarmSimulation
from simulator.workloads import HELD_OUT, HELD_OUT_SEED, WORKLOADS

HOST_RAM_PER_GPU_MEMORY = 1.0
TIGHT_HOST_RAM_PER_GPU_MEMORY = 0.25
TARGET_LOAD_SECONDS_VS_LRU = 0.2
WARM = f"warmpath + warm tier, min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s"
LRU_WARM = "LRU + warm tier"
BELADY_WARM = "Belady-style offline + warm tier"
FLOOR = "first loads only (each model once: no policy does fewer)"


def warm_policies(trace: Sequence[Request]) -> list[Policy]:
    residency = AGENT_MIN_RESIDENCY_SECONDS
    return [
        Policy(WARM, warmpath(residency), min_residency=residency),
        Policy(LRU_WARM, greedy(least_recently_used)),
        Policy(BELADY_WARM, belady(trace)),
    ]


def plain_policies(trace: Sequence[Request]) -> list[Policy]:
    residency = AGENT_MIN_RESIDENCY_SECONDS
    return [
        Policy(WARMPATH, warmpath(residency), min_residency=residency),
        Policy(LRU, greedy(least_recently_used)),
        Policy(BELADY, belady(trace)),
    ]


def run(
    workloads: Sequence[Workload],
    seeds: int,
    first_seed: int,
    hours: float | None,
    host_ram_factor: float,
) -> Results:
    def outcomes(workload: Workload, trace: list[Request]) -> Iterator[tuple[str, Outcome]]:
        for policy in warm_policies(trace):
            yield policy.name, WarmSimulation(workload, policy, host_ram_factor).run(trace)
        for policy in plain_policies(trace):
            yield policy.name, simulate(workload, trace, policy)
        first = {request.model for request in trace}
        yield FLOOR, Outcome(len(first), sum(workload.load_seconds[m] for m in first))

    return replay(workloads, seeds, first_seed, hours, outcomes)


def _wakes(outcome: Outcome) -> float:
    return outcome.wake_seconds if isinstance(outcome, WarmOutcome) else 0.0


def table(results: Results, title: str) -> tuple[list[str], dict[str, bool], list[str], list[str]]:
    lines = [
        "",
        f"#### {title}",
        "",
        "| trace | policy | cold loads | load-seconds | vs LRU | wakes | wake-seconds "
        "| load + wake vs LRU | p99 wait (s) | vs LRU | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    met: dict[str, bool] = {}
    floored: list[str] = []
    worse: list[str] = []
    for name, by_policy in results.items():
        lru_load = median(by_policy[LRU], lambda o: o.load_seconds)
        lru_p99 = median(by_policy[LRU], lambda o: o.p99_wait)
        for policy, outcomes in by_policy.items():
            load = median(outcomes, lambda o: o.load_seconds)
            wake = median(outcomes, _wakes)
            total = median(outcomes, lambda o: o.load_seconds + _wakes(o))
            wakes = median(outcomes, lambda o: o.wakes if isinstance(o, WarmOutcome) else 0)
            if policy == FLOOR:
                waited = "| - | - | - |"
            else:
                p99 = median(outcomes, lambda o: o.p99_wait)
                failed = median(outcomes, lambda o: o.timed_out + o.refused)
                waited = f"| {p99:.1f} | {p99 / lru_p99:.2f}x | {failed:.0f} |"
            lines.append(
                f"| {name} | {policy} | {median(outcomes, lambda o: o.cold_loads):.0f} "
                f"| {load:.0f} | {load / lru_load:.2f}x | {wakes:.0f} | {wake:.0f} "
                f"| {total / lru_load:.2f}x " + waited
            )
        warm = by_policy[WARM]
        today_failed = median(by_policy[WARMPATH], lambda o: o.timed_out + o.refused)
        floor = median(by_policy[FLOOR], lambda o: o.load_seconds)
        if floor > TARGET_LOAD_SECONDS_VS_LRU * lru_load:
            reference = median(by_policy[BELADY_WARM], lambda o: o.load_seconds)
            floored.append(
                f"{name} (first loads alone {floor / lru_load:.2f}x; the Belady-style "
                f"reference with the tier, which knows the future, {reference / lru_load:.2f}x)"
            )
        met[name] = (
            median(warm, lambda o: o.load_seconds) <= TARGET_LOAD_SECONDS_VS_LRU * lru_load
            and median(warm, lambda o: o.p99_wait) <= lru_p99
            and median(warm, lambda o: o.timed_out + o.refused) <= today_failed
        )
        today = by_policy[WARMPATH]
        if any(
            median(warm, figure) > median(today, figure)
            for figure in (
                lambda o: o.load_seconds,
                lambda o: o.p99_wait,
                lambda o: o.timed_out + o.refused,
            )
        ):
            worse.append(name)
    return lines, met, floored, worse


def report(seeds: int, hours: float | None, seconds: Callable[[], float]) -> str:
    lines = [
        "## Warm tier (issue 22): models asleep in host RAM",
        "",
    ]
    verdicts: list[str] = []
    for factor in (HOST_RAM_PER_GPU_MEMORY, TIGHT_HOST_RAM_PER_GPU_MEMORY):
        for label, workloads, first in (
            ("tuning traces", WORKLOADS, 0),
            ("held-out traces", HELD_OUT, HELD_OUT_SEED),
        ):
            results = run(workloads, seeds, first, hours, factor)
            rows, met, floored, worse = table(
                results, f"{label}, host RAM for sleepers {factor:g}x GPU memory"
            )
            lines += rows
            missed = [n for n, ok in met.items() if not ok]
            verdicts.append(
                f"{label}, {factor:g}x: goal met on {sum(met.values())} of {len(met)}"
                + (f" (missed: {', '.join(missed)})" if missed else "")
                + (
                    f"; out of any policy's reach on {', '.join(floored)}: each model's first "
                    f"load alone is above {TARGET_LOAD_SECONDS_VS_LRU:g}x LRU's load-seconds"
                    if floored
                    else ""
                )
                + "; worse than today's policy without the tier (load-seconds, p99 wait or "
                f"failed requests) on {', '.join(worse) if worse else 'none'}"
            )
    lines[2:2] = [
        f"`.venv/bin/python bench/placement_warm.py --seeds {seeds}"
        + (f" --hours {hours:g}" if hours else "")
        + f"`: simulated (took {seconds():.0f} s on {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end; the figures depend on the seeds only); "
        f"medians over {seeds} seeds; see "
        "bench/placement_warm.py's docstring for the wake costs and their sources. "
        f"Goal (issue 22, item 5): load-seconds (from disk) <= {TARGET_LOAD_SECONDS_VS_LRU:g}x "
        "LRU's, p99 wait <= LRU's, and no more failed requests than today's policy (warmpath "
        "without the tier). Wakes are not cold loads: their seconds are counted apart, and "
        "'load + wake' adds them back.",
        "",
        "**Result.** " + "; ".join(verdicts) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="traces per workload (>= 1)")
    parser.add_argument("--hours", type=float, default=None, help="shorten every trace (> 0)")
    parser.add_argument("--out", type=Path, default=None, help="append the report to FILE")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, not {args.seeds}")
    started = time.monotonic()
    text = report(args.seeds, args.hours, lambda: time.monotonic() - started)
    print(text)
    if args.out is not None:
        with args.out.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
