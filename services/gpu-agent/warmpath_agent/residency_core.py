"""What residency's jobs share: the residents table, the change feed, the room signal,
the memory book and the ports, with the few lookups every job needs.

The residency manager (residency.py) builds one and hands it to each job: placement
(placement_planner.py), loading (loading.py), the warm tier's hooks (warm_hooks.py),
server exits (server_exits.py), hung servers (server_health.py) and adoption
(adoption.py). Only those jobs write it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from warmpath_agent.change_feed import ChangeFeed
from warmpath_agent.demand import DemandTracker
from warmpath_agent.drivers import ModelDriver
from warmpath_agent.eviction import estimated_load_seconds
from warmpath_agent.exit_watch import ExitWatchers
from warmpath_agent.inventory import GpuInventory, HostMemory, MemoryBook
from warmpath_agent.measurement import GpuMeasurements
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.residents import Residency, ResidencyState
from warmpath_agent.room import RoomSignal
from warmpath_agent.sleepers import WarmTier
from warmpath_common.config import ModelSpec
from warmpath_common.errors import ModelNotFound

__all__ = ["ResidencyCore"]


@dataclass(eq=False)
class ResidencyCore:
    """One host's residency state and the ports that change it."""

    host: str
    specs: dict[str, ModelSpec]
    """The models this host serves, by name."""
    inventory: GpuInventory
    driver: ModelDriver
    book: MemoryBook
    metrics: AgentMetrics
    clock: Callable[[], float]
    estimate_bytes: Callable[[ModelSpec], int]
    """A model's whole footprint before it was ever measured (footprint.py)."""
    min_residency_seconds: float = 0.0
    host_memory: HostMemory | None = None
    """None: host RAM is not accounted."""
    warm: WarmTier | None = None
    """None: models leaving their GPUs are always unloaded."""
    residents: dict[str, Residency] = field(default_factory=dict)
    """Every model this host holds or is changing, by name."""
    feed: ChangeFeed = field(default_factory=ChangeFeed)
    room: RoomSignal = field(default_factory=RoomSignal)
    """Bumped whenever memory may have become available; room waiters watch it."""
    placing: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a GPU is chosen and its memory booked (never during the slow start)."""
    watchers: ExitWatchers = field(default_factory=ExitWatchers)
    demand: DemandTracker = field(default_factory=DemandTracker)
    leases: dict[str, float] = field(default_factory=dict)
    """By model: until when (the clock's time) callers have requests in flight on it."""
    estimated: dict[str, int] = field(default_factory=dict)
    """Footprints estimated so far, kept: a model waiting for room asks at every chance."""
    timed_loads: dict[str, float] = field(default_factory=dict)
    """Seconds each model's last load from disk took here."""
    measurements: GpuMeasurements = field(init=False)

    def __post_init__(self) -> None:
        self.measurements = GpuMeasurements(self.inventory)

    def spec(self, model: str) -> ModelSpec:
        spec = self.specs.get(model)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise ModelNotFound(f"host {self.host} does not serve {model!r}; it serves: {known}")
        return spec

    def expected_load(self, model: str, need: int) -> float:
        """Seconds a load of `model` (`need` bytes) is expected to take: its last, else
        the assumed rate."""
        return self.timed_loads.get(model) or estimated_load_seconds(need)

    def leased(self, model: str, now: float) -> bool:
        return self.leases.get(model, 0.0) > now

    def next_timed_change(self, at_most: float) -> float:
        """Seconds until a lease or min_residency next runs out (at most `at_most`): they
        run out without an event, so a wait for room is cut there."""
        now = self.clock()
        due = [
            moment
            for residency in self.residents.values()
            if not residency.pinned and residency.state is ResidencyState.READY
            for moment in (
                self.leases.get(residency.model, 0.0),
                (residency.ready_since or now) + self.min_residency_seconds,
            )
            if moment > now
        ]
        # Just past the moment, so that the model is evictable when the plan looks.
        return min(due) - now + 0.001 if due else at_most

    async def host_free_bytes(self) -> int | None:
        """Host RAM available now; None when it is not accounted."""
        return None if self.host_memory is None else await self.host_memory.available_bytes()

    async def total_free_bytes(self) -> int:
        """Free memory on the healthy GPUs, as read now."""
        return sum(gpu.memory_free_bytes for gpu in await self.inventory.read() if gpu.healthy)
