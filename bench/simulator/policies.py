"""The policies: for a model that is not resident, where it goes and what leaves. The
agent's own (warmpath: eviction.plan_placement with its hot set and waits), the order-based
ones (LRU, keep_alive, largest first) and the Belady-style offline reference."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from simulator.cluster import Cluster, Loaded
from simulator.traces import Request
from warmpath_agent.eviction import (
    Candidate,
    GpuRoom,
    NoRoom,
    PlacementPlan,
    ResidentModel,
    plan_placement,
    protected_models,
)
from warmpath_agent.warm_tier import kept_like_the_hot_set

KEEP_ALIVE_SECONDS = 300.0  # Ollama's default keep_alive
AGENT_MIN_RESIDENCY_SECONDS = 10.0  # the agent's default
# A waiter plans once more this long before it gives up, as the agent does when its
# wait budget runs out: a plan it was waiting to avoid is still better than failing.
LAST_CHANCE_SECONDS = 0.01


@dataclass(frozen=True)
class Load:
    gpu: int
    victims: tuple[int, ...]
    unload: bool = field(default=False, kw_only=True)
    """The victims are unloaded even where they would sleep (the model needs all of it)."""


Decision = Load | Literal["wait", "refuse"]

# A policy decides, for a model that is not resident, where it goes and what leaves;
# the last argument is how long the request can still afford to wait for room.
Chooser = Callable[[Cluster, int, float, float], Decision]


@dataclass(frozen=True)
class Policy:
    name: str
    choose: Chooser
    keep_alive: float | None = None
    min_residency: float = 0.0


def greedy(order: Callable[[Cluster, Loaded, float], float]) -> Chooser:
    """Evicts idle models in `order` (smallest key first), on the GPU where the last
    victim it needs comes earliest in that order (then the fewest victims): LRU
    evicts the least recently used models across all GPUs, not just the fewest."""

    def choose(cluster: Cluster, model: int, now: float, patience: float) -> Decision:
        need = cluster.need(model)
        gpus = cluster.gpus_for(model)
        fits = [g for g in gpus if cluster.free(g) >= need]
        if fits:
            return Load(max(fits, key=cluster.free), ())
        best: tuple[tuple[float, int], Load] | None = None
        for gpu in gpus:
            freed, victims, last_key = cluster.free(gpu), [], -math.inf
            idle = cluster.evictable(gpu, model, now)
            # What sleepers keep (not loaded) last: it frees little, and they lose a wake.
            for candidate in sorted(
                idle, key=lambda c: (c.model not in cluster.loaded, order(cluster, c, now))
            ):
                if freed >= need:
                    break
                victims.append(candidate.model)
                last_key = order(cluster, candidate, now)
                freed += cluster.freed_by_eviction(candidate.model, now)
            rank = (last_key, len(victims))
            if freed >= need and (best is None or rank < best[0]):
                best = (rank, Load(gpu, tuple(victims)))
        if best is not None:
            return best[1]
        return "wait" if cluster.could_ever_fit(model) else "refuse"

    return choose


def least_recently_used(cluster: Cluster, candidate: Loaded, now: float) -> float:
    return candidate.last_used


def gpu_rooms(cluster: Cluster, model: int, now: float, sleeping: bool = True) -> list[GpuRoom]:
    """The GPUs `model` may go on, as the agent's PlacementPlanner.place sees them: free
    memory and residents, each with what evicting it frees and costs (a model still
    loading: in use, resident from when it will be ready). `sleeping` False: each priced
    as unloaded, even one that would sleep."""
    return [
        GpuRoom(
            gpu,
            cluster.free(gpu),
            tuple(
                ResidentModel(
                    model=str(m.model),
                    size_bytes=(
                        cluster.freed_by_eviction(m.model, now)
                        if sleeping
                        else cluster.size(m.model)
                    ),
                    load_seconds=(
                        cluster.reload_seconds(m.model, now)
                        if sleeping
                        else cluster.workload.load_seconds[m.model]
                    ),
                    demand_per_minute=cluster.demand.per_minute(str(m.model), now),
                    last_used=m.last_used,
                    resident_since=m.ready_at,
                    in_use=cluster.busy(m, now),
                )
                for m in cluster.loaded.values()
                if m.gpu == gpu
            )
            + cluster.off_gpu_residents(gpu, model, now),
        )
        # As the agent does, only the GPUs it may go on (a sleeping server's own).
        for gpu in cluster.gpus_for(model)
    ]


def warmpath(
    min_residency_seconds: float,
    hot_set: bool = True,
    hysteresis: bool = True,
    time_averaged: bool = True,
) -> Chooser:
    """The agent's own policy: eviction.plan_placement over the same facts it sees
    (protected_models for the hot set, the last one as incumbents, its candidates'
    demand by hot_set_per_minute, as the agent's PlacementPlanner.place does). `time_averaged`
    False ranks the hot set by the conditional estimate (per_minute) instead.
    What a resident frees and costs once evicted, and what sleepers keep on a GPU, are
    the cluster's (Cluster.freed_by_eviction, reload_seconds, off_gpu_residents; the
    warm tier's in simulator/warm_tier.py). As the agent does, no wait rather than
    evict hot-set models that would all sleep in free host RAM (Cluster.sleeps_freely),
    and what sleepers keep on a GPU is evicted as if in the hot set
    (warm_tier.kept_like_the_hot_set)."""

    def choose(cluster: Cluster, model: int, now: float, patience: float) -> Decision:
        loads = cluster.workload.load_seconds
        rooms = gpu_rooms(cluster, model, now)
        hot_set_demand = (
            cluster.demand.hot_set_per_minute if time_averaged else cluster.demand.per_minute
        )
        candidates = [
            Candidate(
                str(known), cluster.size(known), loads[known], hot_set_demand(str(known), now)
            )
            for known in range(len(cluster.workload.sizes_gb))
        ]
        incumbents = cluster.hot_set if hysteresis else frozenset()
        protected = protected_models(rooms, candidates, incumbents) if hot_set else frozenset()
        cluster.hot_set = protected

        def plan_on(rooms: list[GpuRoom]) -> PlacementPlan | NoRoom:
            return plan_placement(
                rooms,
                cluster.need(model),
                now,
                min_residency_seconds,
                model=str(model),
                protected=kept_like_the_hot_set(protected, rooms, cluster.asleep_models()),
            )

        plan = plan_on(rooms)
        unload = False
        if isinstance(plan, NoRoom) and not plan.fits_after_waiting:  # as the agent does:
            # victims unloaded, not asleep, when waiting cannot make room with them asleep
            unloading = plan_on(gpu_rooms(cluster, model, now, sleeping=False))
            if not isinstance(unloading, NoRoom):
                plan, unload = unloading, True
        if isinstance(plan, NoRoom):
            return "wait" if plan.fits_after_waiting else "refuse"
        if 0 < plan.cheaper_in_seconds <= patience:
            return "wait"  # as the agent does: a cheaper victim ages past min_residency soon
        victims_sleep = bool(plan.victims) and all(
            cluster.sleeps_freely(int(v.model), now) for v in plan.victims
        )
        if plan.waits_for_unprotected and not victims_sleep and patience > LAST_CHANCE_SECONDS:
            return "wait"  # as the agent does: rather than evict a hot-set model
        return Load(plan.gpu_index, tuple(int(v.model) for v in plan.victims), unload=unload)

    return choose


def farthest_next_use(trace: Sequence[Request]) -> Callable[[Cluster, Loaded, float], float]:
    """Belady's order: the model whose next request is farthest away first."""
    next_use: dict[int, list[float]] = {}
    for request in trace:
        next_use.setdefault(request.model, []).append(request.at)

    def farthest(cluster: Cluster, candidate: Loaded, now: float) -> float:
        uses = next_use.get(candidate.model, [])
        position = bisect.bisect_right(uses, now)
        return -(uses[position] if position < len(uses) else math.inf)

    return farthest


def belady(trace: Sequence[Request]) -> Chooser:
    return greedy(farthest_next_use(trace))


# The policies the tables pick out by name.
WARMPATH = f"warmpath, min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s (agent default)"
WARMPATH_NO_HYSTERESIS = (
    f"warmpath (hot set without hysteresis), min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s"
)
WARMPATH_CONDITIONAL_HOT_SET = (
    f"warmpath (hot set by the conditional wait), min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s"
)
WARMPATH_NO_HOT_SET = (
    f"warmpath without the hot set (cost only), min_residency {AGENT_MIN_RESIDENCY_SECONDS:g} s"
)
LRU = "LRU"
BELADY = "Belady-style offline (farthest next use)"


def policies(trace: Sequence[Request]) -> list[Policy]:
    residency = AGENT_MIN_RESIDENCY_SECONDS
    return [
        Policy(WARMPATH, warmpath(residency), min_residency=residency),
        Policy(
            WARMPATH_CONDITIONAL_HOT_SET,
            warmpath(residency, time_averaged=False),
            min_residency=residency,
        ),
        Policy(
            WARMPATH_NO_HYSTERESIS, warmpath(residency, hysteresis=False), min_residency=residency
        ),
        Policy(WARMPATH_NO_HOT_SET, warmpath(residency, hot_set=False), min_residency=residency),
        Policy(LRU, greedy(least_recently_used)),
        Policy("keep_alive expiry (5 min) + LRU", greedy(least_recently_used), KEEP_ALIVE_SECONDS),
        Policy("largest first", greedy(lambda cluster, c, now: -cluster.size(c.model))),
        Policy(BELADY, belady(trace)),
    ]
