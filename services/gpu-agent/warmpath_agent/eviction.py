"""Where a model goes and what leaves to make room: the agent's placement policy.

Pure functions of plain data, so that the agent (residency.py) and the
placement simulator (bench/placement.py) run exactly the same code.

Placement: a GPU where the model fits without evicting anything, the one with
the most free memory; otherwise the GPU where making room costs least.

Eviction never takes a pinned model, one with requests in flight, or one
resident for less than `min_residency_seconds` (so a burst cannot evict what
it just loaded: no thrashing). Among the rest it minimises the expected
reload cost of what it evicts:

    reload_cost(model) = load_seconds(model) * demand_per_minute(model)

i.e. the load-seconds per minute the cluster should expect to spend bringing
the model back. Victims are taken greedily by cost per byte freed (ties: least
recently used first), then any victim not needed to cover the shortfall is
put back, the costliest first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResidentModel:
    model: str
    size_bytes: int
    load_seconds: float
    demand_per_minute: float
    last_used: float
    resident_since: float
    pinned: bool = False
    in_use: bool = False

    @property
    def reload_cost(self) -> float:
        # A model never measured still costs something to bring back.
        return max(self.load_seconds, 1.0) * self.demand_per_minute


@dataclass(frozen=True, slots=True)
class GpuRoom:
    index: int
    free_bytes: int
    residents: tuple[ResidentModel, ...]


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    gpu_index: int
    victims: tuple[ResidentModel, ...]

    @property
    def cost(self) -> float:
        return sum(v.reload_cost for v in self.victims)


@dataclass(frozen=True, slots=True)
class NoRoom:
    """Why nothing fits: the best GPU's free and freeable memory."""

    gpu_index: int
    free_bytes: int
    freeable_bytes: int


def evictable(resident: ResidentModel, now: float, min_residency_seconds: float) -> bool:
    return (
        not resident.pinned
        and not resident.in_use
        and now - resident.resident_since >= min_residency_seconds
    )


def choose_victims(
    residents: Sequence[ResidentModel], shortfall: int, now: float, min_residency_seconds: float
) -> tuple[ResidentModel, ...] | None:
    """The cheapest set of residents freeing `shortfall` bytes, or None if none does."""
    if shortfall <= 0:
        return ()
    eligible = sorted(
        (r for r in residents if evictable(r, now, min_residency_seconds)),
        key=lambda r: (r.reload_cost / max(r.size_bytes, 1), r.last_used),
    )
    chosen: list[ResidentModel] = []
    freed = 0
    for resident in eligible:
        if freed >= shortfall:
            break
        chosen.append(resident)
        freed += resident.size_bytes
    if freed < shortfall:
        return None
    for resident in sorted(chosen, key=lambda r: r.reload_cost, reverse=True):
        if freed - resident.size_bytes >= shortfall:
            chosen.remove(resident)
            freed -= resident.size_bytes
    return tuple(sorted(chosen, key=lambda r: r.last_used))


def plan_placement(
    gpus: Sequence[GpuRoom], need: int, now: float, min_residency_seconds: float
) -> PlacementPlan | NoRoom:
    fitting = [gpu for gpu in gpus if gpu.free_bytes >= need]
    if fitting:
        return PlacementPlan(max(fitting, key=lambda g: g.free_bytes).index, ())
    plans = []
    for gpu in gpus:
        victims = choose_victims(gpu.residents, need - gpu.free_bytes, now, min_residency_seconds)
        if victims is not None:
            plans.append(PlacementPlan(gpu.index, victims))
    if plans:
        return min(plans, key=lambda p: (p.cost, len(p.victims), p.gpu_index))
    if not gpus:
        return NoRoom(-1, 0, 0)
    roomiest = max(gpus, key=lambda g: g.free_bytes)
    freeable = sum(
        r.size_bytes for r in roomiest.residents if evictable(r, now, min_residency_seconds)
    )
    return NoRoom(roomiest.index, max(0, roomiest.free_bytes), freeable)


class DemandTracker:
    """Recent requests per minute for each model, decaying exponentially.

    `half_life_seconds` sets how quickly old demand is forgotten.
    """

    def __init__(self, half_life_seconds: float = 300.0) -> None:
        self._decay = math.log(2) / half_life_seconds
        self._level: dict[str, tuple[float, float]] = {}

    def record(self, model: str, now: float, requests: int = 1) -> None:
        self._level[model] = (self._current(model, now) + requests, now)

    def per_minute(self, model: str, now: float) -> float:
        # The decayed count over its mean lifetime (1/decay) is a rate.
        return self._current(model, now) * self._decay * 60.0

    def _current(self, model: str, now: float) -> float:
        level, at = self._level.get(model, (0.0, now))
        return level * math.exp(-self._decay * max(0.0, now - at))
