"""The warm tier in the simulated cluster: evicted models sleep in host RAM and wake in
seconds instead of reloading from disk, by the agent's own rules (warm_tier, WarmTier).
WarmCluster and WarmSimulation extend cluster.py's Cluster and simulation.py's
Simulation; bench/placement_warm.py runs them and says what they model and where the
wake costs come from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydantic import ByteSize

from simulator.cluster import GB, Cluster, Loaded
from simulator.policies import Decision, Load, Policy, gpu_rooms
from simulator.simulation import Outcome, Simulation
from simulator.traces import MIXED_LOAD_SECONDS, Request, Workload
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
    """The simulator's Simulation with a host RAM tier below the GPUs."""

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
        return self.ready_in(model, decision.gpu, took, now)

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
