"""The warm tier in the placement simulator: evicted models sleep in host RAM and wake
in seconds, instead of reloading from disk (issue 22, docs/warm-tier.md).

Same traces, same simulated system as bench/placement.py; what changes:

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
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydantic import ByteSize
from simulator.cluster import GB, Cluster, Loaded
from simulator.policies import (
    AGENT_MIN_RESIDENCY_SECONDS,
    BELADY,
    LRU,
    WARMPATH,
    Decision,
    Load,
    Policy,
    belady,
    gpu_rooms,
    greedy,
    least_recently_used,
    warmpath,
)
from simulator.replay import Results, replay
from simulator.report import median
from simulator.simulation import Outcome, Simulation, simulate
from simulator.traces import MIXED_LOAD_SECONDS, Request, Workload
from simulator.workloads import HELD_OUT, HELD_OUT_SEED, WORKLOADS

from warmpath_agent.eviction import ResidentModel
from warmpath_agent.sleepers import WarmTier
from warmpath_agent.warm_tier import (
    Demotion,
    PageCache,
    ServerSleep,
    Sleeper,
    SleepKind,
    choose_demotion,
    estimated_asleep_gpu_bytes,
    moves_rather_than_waits,
    return_seconds,
    room_in_seconds,
    sleep_kind,
    sleeps_freely,
)
from warmpath_common.config import BackendKindName, ContainerSpec, ModelSource, ModelSpec

HOST_RAM_PER_GPU_MEMORY = 1.0
TIGHT_HOST_RAM_PER_GPU_MEMORY = 0.25
TARGET_LOAD_SECONDS_VS_LRU = 0.2
WARM = f"warmpath + warm tier, min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s"
LRU_WARM = "LRU + warm tier"
BELADY_WARM = "Belady-style offline + warm tier"
FLOOR = "first loads only (each model once: no policy does fewer)"


def simulated_specs(workload: Workload) -> tuple[ModelSpec, ...]:
    """Each model as the agent's registry would say it, for the agent's warm-tier code to
    read its kind from: a vLLM container (a server that sleeps: the slow-starting half of
    MIXED_LOAD_SECONDS) or a llama.cpp process (its file kept in the page cache)."""
    mixed = workload.load_seconds == MIXED_LOAD_SECONDS
    return tuple(
        ModelSpec(
            name=f"model-{rank}",
            backend=BackendKindName.VLLM,
            source=ModelSource(served_id=f"model-{rank}"),
            memory=ByteSize(int(size * GB)),
            container=ContainerSpec(image="vllm/vllm-openai:v0.8.5"),
        )
        if mixed and rank % 2
        else ModelSpec(
            name=f"model-{rank}",
            backend=BackendKindName.LLAMA_CPP,
            source=ModelSource(path=Path(f"model-{rank}.gguf")),
        )
        for rank, size in enumerate(workload.sizes_gb)
    )


def _decisions_only() -> WarmTier:
    """The agent's WarmTier for its decisions alone: the simulator calls no server."""
    return WarmTier(servers=cast(ServerSleep, None), page_cache=cast(PageCache, None))


def wake_seconds(specs: Sequence[ModelSpec], workload: Workload) -> tuple[float, ...]:
    """Each model's wake: the agent's estimate for its kind and size."""
    tier = _decisions_only()
    return tuple(
        tier.wake_seconds(spec, int(size * GB)) or math.inf
        for spec, size in zip(specs, workload.sizes_gb, strict=True)
    )


@dataclass
class WarmOutcome(Outcome):
    wakes: int = 0
    wake_seconds: float = 0.0
    sleeps: int = 0
    sleepers_unloaded_for_gpu_memory: int = 0
    """Sleepers unloaded after all for what their servers kept on a GPU (make_room)."""
    moved: int = 0
    """Sleeping servers unloaded and loaded elsewhere rather than wait for room on their
    own GPU (warm_tier.moves_rather_than_waits)."""


@dataclass
class WarmCluster(Cluster):
    """The GPUs, the models asleep in the host RAM below them, and what each sleeping
    server keeps on its GPU."""

    host_ram_bytes: int = 0
    specs: tuple[ModelSpec, ...] = ()
    wake: tuple[float, ...] = ()
    asleep: dict[int, Loaded] = field(default_factory=dict)
    """The models asleep, each with its record as it left its GPU (that GPU, its last use)."""
    tier: WarmTier = field(default_factory=_decisions_only)

    def sleeper(self, model: int, now: float) -> Sleeper:
        return Sleeper(
            str(model),
            self.size(model),
            self.workload.load_seconds[model],
            self.wake[model],
            self.demand.per_minute(str(model), now),
        )

    def host_ram(self, now: float) -> tuple[list[Sleeper], int]:
        """The sleepers now, and the host RAM left free beside them."""
        used = sum(self.size(m) for m in self.asleep)
        return [self.sleeper(m, now) for m in self.asleep], self.host_ram_bytes - used

    def demotion(self, model: int, now: float) -> Demotion:
        """The agent's rule (warm_tier.choose_demotion) for `model` leaving its GPU now."""
        return choose_demotion(self.sleeper(model, now), *self.host_ram(now))

    def server_asleep(self, model: int) -> bool:
        """`model` is asleep and its server still runs, bound to its GPU."""
        return model in self.asleep and sleep_kind(self.specs[model]) is SleepKind.SERVER

    def kept(self, model: int) -> int:
        """GPU memory `model`'s server keeps while it sleeps: the agent's estimate where
        nothing is measured (warm_tier.estimated_asleep_gpu_bytes); none in the page cache."""
        if sleep_kind(self.specs[model]) is not SleepKind.SERVER:
            return 0
        return estimated_asleep_gpu_bytes(self.size(model))

    def keeping(self, gpu: int, placing: int | None = None) -> list[Loaded]:
        """The sleeping servers holding memory on `gpu`, but `placing` (a wake needs what
        it keeps)."""
        return [
            r
            for m, r in self.asleep.items()
            if r.gpu == gpu and m != placing and self.server_asleep(m) and self.kept(m)
        ]

    def free(self, gpu: int) -> int:
        return super().free(gpu) - sum(self.kept(r.model) for r in self.keeping(gpu))

    def need(self, model: int) -> int:
        """A sleeping server's wake needs room only for what it let go."""
        return self.size(model) - (self.kept(model) if self.server_asleep(model) else 0)

    def gpus_for(self, model: int) -> Sequence[int]:
        """A sleeping server wakes where it sleeps."""
        if self.server_asleep(model):
            return (self.asleep[model].gpu,)
        return super().gpus_for(model)

    def freed_by_eviction(self, model: int, now: float) -> int:
        """The agent's WarmTier.freed_by_eviction: all of it, less what the server would
        keep asleep; a sleeper, unloaded, frees what it keeps."""
        if model in self.asleep:
            return self.kept(model)
        return self.tier.freed_by_eviction(
            self.specs[model], self.size(model), self.sleeper(model, now), *self.host_ram(now)
        )

    def reload_seconds(self, model: int, now: float) -> float:
        """What bringing `model` back would cost if evicted now (the agent's
        warm_tier.return_seconds: a wake, plus what the sleepers it pushes out lose)."""
        return return_seconds(self.sleeper(model, now), *self.host_ram(now))

    def sleeps_freely(self, model: int, now: float) -> bool:
        """A sleeper evicted is unloaded: it comes back in a load, not a wake."""
        return model not in self.asleep and sleeps_freely(
            self.sleeper(model, now), *self.host_ram(now)
        )

    def asleep_models(self) -> frozenset[str]:
        return frozenset(str(m) for m in self.asleep)

    def evictable(self, gpu: int, placing: int, now: float) -> list[Loaded]:
        return super().evictable(gpu, placing, now) + self.keeping(gpu, placing)

    def off_gpu_residents(self, gpu: int, placing: int, now: float) -> tuple[ResidentModel, ...]:
        """Sleeping servers' leftovers on `gpu`, priced as the agent's WarmHooks.as_victim
        does: unloading one frees it, and its next request loads instead of waking."""
        return tuple(
            ResidentModel(
                model=str(r.model),
                size_bytes=self.kept(r.model),
                load_seconds=max(self.workload.load_seconds[r.model] - self.wake[r.model], 0.0),
                demand_per_minute=self.demand.per_minute(str(r.model), now),
                last_used=r.last_used,
                resident_since=r.ready_at,
                host_bytes=self.size(r.model),
            )
            for r in self.keeping(gpu, placing)
        )


class WarmSimulation(Simulation):
    """bench/placement.py's Simulation with a host RAM tier below the GPUs."""

    def __init__(self, workload: Workload, policy: Policy, host_ram_factor: float) -> None:
        super().__init__(workload, policy)
        self.outcome: WarmOutcome = WarmOutcome()
        specs = simulated_specs(workload)
        self.cluster: WarmCluster = WarmCluster(
            workload,
            host_ram_bytes=int(host_ram_factor * sum(workload.gpu_gb) * GB),
            specs=specs,
            wake=wake_seconds(specs, workload),
        )

    def waiter(self, request: Request):  # type: ignore[no-untyped-def]
        waiting = super().waiter(request)
        if request.model in self.cluster.asleep:
            # The agent's rule: the deadline must leave time for what comes, a wake here.
            waiting.give_up_at += self.workload.load_seconds[request.model]
            waiting.give_up_at -= self.cluster.wake[request.model]
        return waiting

    def decide(self, model: int, now: float, patience: float) -> Decision:
        """As the agent does, a sleeping server that can never wake where it sleeps is
        unloaded, and the model loaded from disk wherever it fits; so is one whose GPU
        has room only later than that load would take (warm_tier.moves_rather_than_waits:
        a load in progress there, say)."""
        decision = super().decide(model, now, patience)
        cluster = self.cluster
        if not cluster.server_asleep(model):
            return decision
        if decision == "wait":
            (room,) = gpu_rooms(cluster, model, now)
            room_in = room_in_seconds(room, cluster.need(model), now, self.policy.min_residency)
            if not moves_rather_than_waits(
                room_in, cluster.wake[model], self.workload.load_seconds[model]
            ):
                return decision
            self.outcome.moved += 1
        elif decision != "refuse":
            return decision
        del cluster.asleep[model]
        return super().decide(model, now, patience)

    def load(self, model: int, decision: Load, now: float) -> Loaded:
        for victim in decision.victims:
            self.demote(victim, now, may_sleep=not decision.unload)
        self.make_room(model, decision.gpu)
        if model not in self.cluster.asleep:
            return super().load(model, Load(decision.gpu, ()), now)
        del self.cluster.asleep[model]
        took = self.cluster.wake[model]
        self.outcome.wakes += 1
        self.outcome.wake_seconds += took
        resident = Loaded(model, decision.gpu, now + took, now, now)
        self.cluster.loaded[model] = resident
        return resident

    def demote(self, victim: int, now: float, may_sleep: bool = True) -> None:
        if victim in self.cluster.asleep:  # a sleeper's leftover: it is unloaded
            del self.cluster.asleep[victim]
            return
        if victim not in self.cluster.loaded:  # a sleeper an earlier victim pushed out
            return
        leaving = self.cluster.loaded.pop(victim)
        demotion = self.cluster.demotion(victim, now)
        if demotion.sleep and may_sleep:
            for name in demotion.unload_sleepers:
                del self.cluster.asleep[int(name)]
            self.cluster.asleep[victim] = leaving
            self.outcome.sleeps += 1

    def make_room(self, model: int, gpu: int) -> None:
        """A victim counted as unloaded may sleep after all (an earlier victim's sleep
        freed host RAM), keeping some of its GPU: sleepers there are then unloaded, the
        latest first, until `model` fits."""
        keeping = self.cluster.keeping(gpu, model)
        while self.cluster.free(gpu) < self.cluster.need(model) and keeping:
            del self.cluster.asleep[keeping.pop().model]
            self.outcome.sleepers_unloaded_for_gpu_memory += 1


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
