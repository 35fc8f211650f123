"""The simulated GPUs: what is loaded on each, what is free, and what may be evicted.
A tier below the GPUs (warm_tier.py) or models spanning GPUs (bench/placement_gangs.py)
subclass Cluster and change what its hooks say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from simulator.traces import Workload
from warmpath_agent.demand import DemandTracker
from warmpath_agent.eviction import ResidentModel

GB = 1024**3


@dataclass
class Loaded:
    model: int
    gpu: int
    ready_at: float
    last_used: float
    busy_until: float


@dataclass
class Cluster:
    workload: Workload
    loaded: dict[int, Loaded] = field(default_factory=dict)
    demand: DemandTracker = field(default_factory=DemandTracker)
    hot_set: frozenset[str] = frozenset()
    """The last hot set warmpath chose (the agent keeps it the same way)."""

    def size(self, model: int) -> int:
        return int(self.workload.sizes_gb[model] * GB)

    def free(self, gpu: int) -> int:
        used = sum(self.size(m.model) for m in self.loaded.values() if m.gpu == gpu)
        return int(self.workload.gpu_gb[gpu] * GB) - used

    def busy(self, resident: Loaded, now: float) -> bool:
        return resident.busy_until > now or resident.ready_at > now

    def could_ever_fit(self, model: int) -> bool:
        return self.size(model) <= max(self.workload.gpu_gb) * GB

    # What a tier below the GPUs changes (simulator/warm_tier.py): here, none.
    def need(self, model: int) -> int:
        """GPU memory placing `model` takes."""
        return self.size(model)

    def gpus_for(self, model: int) -> Sequence[int]:
        """The GPUs `model` may be placed on."""
        return range(len(self.workload.gpu_gb))

    def freed_by_eviction(self, model: int, now: float) -> int:
        """GPU memory evicting `model` frees."""
        return self.size(model)

    def reload_seconds(self, model: int, now: float) -> float:
        """What bringing `model` back would cost if it were evicted now."""
        return self.workload.load_seconds[model]

    def sleeps_freely(self, model: int, now: float) -> bool:
        """Evicted now, `model` would come back in a wake, pushing nothing out."""
        return False

    def evictable(self, gpu: int, placing: int, now: float) -> list[Loaded]:
        """What the order-based policies may evict on `gpu` to place `placing`."""
        return [m for m in self.loaded.values() if m.gpu == gpu and not self.busy(m, now)]

    def off_gpu_residents(self, gpu: int, placing: int, now: float) -> tuple[ResidentModel, ...]:
        """Memory held on `gpu` by models that are not loaded, as eviction sees it."""
        return ()

    def asleep_models(self) -> frozenset[str]:
        """The models asleep below the GPUs."""
        return frozenset()
