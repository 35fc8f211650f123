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
the model back. load_seconds is the model's last measured load on this host
(estimated from its size for a model never loaded here, see
estimated_load_seconds); demand_per_minute is its request rate, exponentially
decayed with a 5-minute half-life (DemandTracker), which forgets a one-off
request within minutes but remembers a model used every few minutes. Victims
are taken greedily by cost per byte freed (ties: least recently used first),
then any victim not needed to cover the shortfall is put back, the costliest
first; the GPU whose victims cost least wins.

Waiting beats a costlier eviction: when the cheapest victims are protected
only by min_residency for a few more seconds, the plan says so
(PlacementPlan.cheaper_in_seconds) and a caller that can wait that long waits
and plans again, rather than evicting a hot model for a one-off request
(bench/results/placement.md measures what this and the rest are worth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace


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
    cheaper_in_seconds: float = 0.0
    """When positive: a cheaper plan becomes possible this much later, once residents
    now protected only by min_residency age past it. A caller that can wait that long
    should, and plan again; one that cannot goes ahead with this plan."""

    @property
    def cost(self) -> float:
        return sum(v.reload_cost for v in self.victims)


@dataclass(frozen=True, slots=True)
class NoRoom:
    """Why nothing fits now, on the GPU that comes closest once waiting has done its work.

    `freeable_bytes`: held by models that may be evicted now. `waitable_bytes`: held by
    unpinned models that may not be evicted *yet* (requests in flight, still loading,
    or resident for less than min_residency); they become freeable by themselves.
    """

    gpu_index: int
    free_bytes: int
    freeable_bytes: int
    waitable_bytes: int = 0
    need_bytes: int = 0

    @property
    def fits_after_waiting(self) -> bool:
        """Waiting can help: only pinned models or memory the agent does not own stand
        in the way otherwise, and those never leave by themselves."""
        return self.free_bytes + self.freeable_bytes + self.waitable_bytes >= self.need_bytes


# For a model whose load was never timed here (adopted after a restart): process
# start-up plus weights read at a modest disk-to-GPU rate. Deliberately not cheap:
# a model assumed free to reload is evicted first, and is then slow to bring back.
ASSUMED_START_SECONDS = 5.0
ASSUMED_LOAD_BYTES_PER_SECOND = 0.5 * 1024**3


def estimated_load_seconds(size_bytes: int) -> float:
    return ASSUMED_START_SECONDS + max(size_bytes, 0) / ASSUMED_LOAD_BYTES_PER_SECOND


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
    plan = _cheapest_plan(gpus, need, now, min_residency_seconds)
    # min_residency keeps what was just loaded from being evicted at once; it should
    # not push the eviction onto a costlier model (the health checks of the incidents,
    # each loading a model seconds after the last, would evict the hot set instead of
    # each other). So: the plan once every young resident has aged.
    aged = now + min_residency_seconds
    later = _cheapest_plan(gpus, need, aged, min_residency_seconds) if aged > now else None
    if later is not None and (plan is None or later.cost < plan.cost):
        wait = max(v.resident_since + min_residency_seconds for v in later.victims) - now
        if plan is not None and wait > 0:
            return replace(plan, cheaper_in_seconds=wait)
    if plan is not None:
        return plan
    if not gpus:
        return NoRoom(-1, 0, 0, 0, need)
    rooms = [_no_room(gpu, need, now, min_residency_seconds) for gpu in gpus]
    return max(
        rooms,
        key=lambda r: (r.free_bytes + r.freeable_bytes + r.waitable_bytes, r.free_bytes),
    )


def _cheapest_plan(
    gpus: Sequence[GpuRoom], need: int, now: float, min_residency_seconds: float
) -> PlacementPlan | None:
    plans = []
    for gpu in gpus:
        victims = choose_victims(gpu.residents, need - gpu.free_bytes, now, min_residency_seconds)
        if victims is not None:
            plans.append(PlacementPlan(gpu.index, victims))
    return min(plans, key=lambda p: (p.cost, len(p.victims), p.gpu_index), default=None)


def _no_room(gpu: GpuRoom, need: int, now: float, min_residency_seconds: float) -> NoRoom:
    freeable = waitable = 0
    for resident in gpu.residents:
        if evictable(resident, now, min_residency_seconds):
            freeable += resident.size_bytes
        elif not resident.pinned:
            waitable += resident.size_bytes
    return NoRoom(gpu.index, max(0, gpu.free_bytes), freeable, waitable, need)


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
