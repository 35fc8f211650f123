"""Where a model goes and what leaves to make room: the agent's placement policy
(reload cost, the hot set, demand estimates). Pure functions of plain data, so that
the agent (placement_planner.py) and the placement simulator (bench/simulator/policies.py)
run exactly the same code. Why the policy is what it is: docs/architecture.md, "How the
policy is derived".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar

__all__ = [
    "ASSUMED_LOAD_BYTES_PER_SECOND",
    "ASSUMED_START_SECONDS",
    "INCUMBENT_ADVANTAGE",
    "Candidate",
    "GpuRoom",
    "NoRoom",
    "PlacementPlan",
    "RankedByVictims",
    "ResidentModel",
    "choose_victims",
    "estimated_load_seconds",
    "evictable",
    "no_room_on",
    "outside_memory_will_free",
    "packs",
    "plan_placement",
    "protected_models",
    "reload_cost",
    "with_waiting",
]


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
    host_bytes: int = 0
    """Host RAM it holds (its offloaded layers), which evicting it frees too (gang.py)."""

    @property
    def reload_cost(self) -> float:
        return reload_cost(self.load_seconds, self.demand_per_minute)


def reload_cost(load_seconds: float, demand_per_minute: float) -> float:
    # A model never measured still costs something to bring back.
    return max(load_seconds, 1.0) * demand_per_minute


@dataclass(frozen=True, slots=True)
class GpuRoom:
    index: int
    free_bytes: int
    residents: tuple[ResidentModel, ...]


class RankedByVictims:
    """A plan's cost and rank, from what it evicts (PlacementPlan, layouts.py's GangPlan)."""

    __slots__ = ()
    victims: tuple[ResidentModel, ...]
    protected_victims: int

    @property
    def cost(self) -> float:
        return sum(v.reload_cost for v in self.victims)

    @property
    def rank(self) -> tuple[int, float]:
        """Lower is better: hot-set models evicted, then reload cost."""
        return (self.protected_victims, self.cost)


@dataclass(frozen=True, slots=True)
class PlacementPlan(RankedByVictims):
    gpu_index: int
    victims: tuple[ResidentModel, ...]
    cheaper_in_seconds: float = 0.0
    """When positive: a cheaper plan becomes possible this much later, once residents
    now protected only by min_residency age past it. A caller that can wait that long
    should, and plan again; one that cannot goes ahead with this plan."""

    waits_for_unprotected: bool = False
    """True when the plan evicts a hot-set model for one outside it while models outside
    the hot set hold memory that frees itself (requests in flight, loading, younger than
    min_residency): a caller that can wait should, and plan again when room changes;
    when it can no longer wait, it goes ahead with this plan."""
    protected_victims: int = 0


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
    no_gpu_set: bool = False
    """No set of this host's GPUs can ever hold the model as it is (gang.py): too few
    GPUs for its tensor_parallel, or too little memory on every set it may use."""

    @property
    def fits_after_waiting(self) -> bool:
        """Waiting can help: only pinned models or memory the agent does not own stand
        in the way otherwise, and those never leave by themselves."""
        return (
            not self.no_gpu_set
            and self.free_bytes + self.freeable_bytes + self.waitable_bytes >= self.need_bytes
        )


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
    residents: Sequence[ResidentModel],
    shortfall: int,
    now: float,
    min_residency_seconds: float,
    protected: frozenset[str] = frozenset(),
) -> tuple[ResidentModel, ...] | None:
    """The cheapest set of residents freeing `shortfall` bytes, or None if none does;
    models outside `protected` (the hot set) go before any model in it."""
    if shortfall <= 0:
        return ()
    eligible = sorted(
        (r for r in residents if evictable(r, now, min_residency_seconds)),
        key=lambda r: (r.model in protected, r.reload_cost / max(r.size_bytes, 1), r.last_used),
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
    put_back_first = sorted(
        chosen, key=lambda r: (r.model in protected, r.reload_cost), reverse=True
    )
    for resident in put_back_first:
        if freed - resident.size_bytes >= shortfall:
            chosen.remove(resident)
            freed -= resident.size_bytes
    return tuple(sorted(chosen, key=lambda r: r.last_used))


def plan_placement(
    gpus: Sequence[GpuRoom],
    need: int,
    now: float,
    min_residency_seconds: float,
    *,
    model: str = "",
    protected: frozenset[str] = frozenset(),
) -> PlacementPlan | NoRoom:
    """Where `model` (needing `need` bytes) goes and what leaves; `protected` is the
    hot set (protected_models), empty for plain cost-based eviction."""
    fitting = [gpu for gpu in gpus if gpu.free_bytes >= need]
    if fitting:
        return PlacementPlan(max(fitting, key=lambda g: g.free_bytes).index, ())
    # min_residency keeps what was just loaded from being evicted at once; it should
    # not push the eviction onto a costlier model (the health checks of the incidents,
    # each loading a model seconds after the last, would evict the hot set instead of
    # each other). So: the plan once every young resident has aged.
    plan = with_waiting(
        gpus,
        now,
        min_residency_seconds,
        model,
        protected,
        lambda at: _cheapest_plan(gpus, need, at, min_residency_seconds, protected),
    )
    if plan is not None:
        return plan
    if not gpus:
        return NoRoom(-1, 0, 0, 0, need)
    rooms = [no_room_on(gpu, need, now, min_residency_seconds) for gpu in gpus]
    return max(
        rooms,
        key=lambda r: (r.free_bytes + r.freeable_bytes + r.waitable_bytes, r.free_bytes),
    )


class _Plan(Protocol):
    """A plan with_waiting adjusts: a dataclass that also has `cheaper_in_seconds` and
    `waits_for_unprotected` fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def victims(self) -> tuple[ResidentModel, ...]: ...

    @property
    def protected_victims(self) -> int: ...

    @property
    def rank(self) -> tuple[int, float]: ...


_P = TypeVar("_P", bound=_Plan)


def with_waiting(
    gpus: Sequence[GpuRoom],
    now: float,
    min_residency_seconds: float,
    model: str,
    protected: frozenset[str],
    best: Callable[[float], _P | None],
) -> _P | None:
    """`best(now)`, the plan (PlacementPlan, or layouts.py's GangPlan) made at a moment,
    with the waiting rules: `cheaper_in_seconds` when the plan once every young resident
    has aged is better, `waits_for_unprotected` when a hot-set model would be evicted
    for one outside it. None when no plan exists now."""
    plan = best(now)
    aged = now + min_residency_seconds
    later = best(aged) if aged > now else None
    if later is not None and (plan is None or later.rank < plan.rank):
        wait = max((v.resident_since + min_residency_seconds for v in later.victims), default=now)
        if plan is not None and wait - now > 0:
            return replace(plan, cheaper_in_seconds=wait - now)
    if plan is not None and plan.protected_victims and model not in protected:
        return replace(
            plan,
            waits_for_unprotected=outside_memory_will_free(
                gpus, now, min_residency_seconds, protected
            ),
        )
    return plan


def outside_memory_will_free(
    gpus: Sequence[GpuRoom], now: float, min_residency_seconds: float, protected: frozenset[str]
) -> bool:
    """Some model outside the hot set holds memory that frees itself (requests in flight,
    still loading, or younger than min_residency): worth waiting for before evicting a
    hot one, since the next plan can take it instead."""
    return any(
        not resident.pinned
        and resident.model not in protected
        and not evictable(resident, now, min_residency_seconds)
        for gpu in gpus
        for resident in gpu.residents
    )


def _cheapest_plan(
    gpus: Sequence[GpuRoom],
    need: int,
    now: float,
    min_residency_seconds: float,
    protected: frozenset[str],
) -> PlacementPlan | None:
    plans = []
    for gpu in gpus:
        victims = choose_victims(
            gpu.residents, need - gpu.free_bytes, now, min_residency_seconds, protected
        )
        if victims is not None:
            hot = sum(v.model in protected for v in victims)
            plans.append(PlacementPlan(gpu.index, victims, protected_victims=hot))
    return min(plans, key=lambda p: (p.rank, len(p.victims), p.gpu_index), default=None)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model the hot set may hold: one asked for recently, whether resident or not."""

    model: str
    size_bytes: int
    load_seconds: float
    demand_per_minute: float

    @property
    def reload_cost(self) -> float:
        return reload_cost(self.load_seconds, self.demand_per_minute)


# How much more a challenger must be worth (reload cost per byte) than a model in the
# last hot set to take its place: hysteresis against noise in the demand estimates.
INCUMBENT_ADVANTAGE = 2.0


def protected_models(
    gpus: Sequence[GpuRoom],
    candidates: Sequence[Candidate],
    incumbents: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """The hot set: candidates by reload cost per byte (an incumbent's, from the last hot
    set, counted INCUMBENT_ADVANTAGE times), each admitted while the hot set and room for
    the largest candidate left out still pack onto the GPUs (first fit decreasing; a
    GPU's room is its free memory plus its unpinned residents)."""
    capacities = [
        gpu.free_bytes + sum(r.size_bytes for r in gpu.residents if not r.pinned) for gpu in gpus
    ]
    pinned = {r.model for gpu in gpus for r in gpu.residents if r.pinned}
    ranked = sorted(
        (c for c in candidates if c.reload_cost > 0 and c.model not in pinned),
        key=lambda c: (
            c.reload_cost
            / max(c.size_bytes, 1)
            * (INCUMBENT_ADVANTAGE if c.model in incumbents else 1.0)
        ),
        reverse=True,
    )
    # A model larger than every GPU together runs partly offloaded in whatever room is
    # left (gang.py): it needs no room kept for it, and none can hold it whole.
    together = sum(capacities)
    hot: list[Candidate] = []
    for candidate in ranked:
        trial = [*hot, candidate]
        left_out = [c.size_bytes for c in ranked if c not in trial and c.size_bytes <= together]
        room_for_the_rest = [max(left_out)] if left_out else []
        if packs([c.size_bytes for c in trial] + room_for_the_rest, capacities):
            hot = trial
    return frozenset(c.model for c in hot)


def packs(sizes: Sequence[float], capacities: Sequence[float]) -> bool:
    """First fit decreasing: a sufficient test, not an exact one (bin packing is NP-hard).
    A size larger than every capacity is a model split over GPUs (gang.py): it takes
    the emptiest GPUs' room, as much as it needs."""
    room = sorted(capacities, reverse=True)
    largest = room[0] if room else 0.0
    for size in sorted(sizes, reverse=True):
        if size > largest:
            left = size
            for index in sorted(range(len(room)), key=lambda i: -room[i]):
                taken = min(room[index], left)
                room[index] -= taken
                left -= taken
            if left > 0:
                return False
            continue
        for index, free in enumerate(room):
            if free >= size:
                room[index] = free - size
                break
        else:
            return False
    return True


def no_room_on(gpu: GpuRoom, need: int, now: float, min_residency_seconds: float) -> NoRoom:
    """Why `gpu` cannot take `need` bytes now: what is free, freeable and waitable."""
    freeable = waitable = 0
    for resident in gpu.residents:
        if evictable(resident, now, min_residency_seconds):
            freeable += resident.size_bytes
        elif not resident.pinned:
            waitable += resident.size_bytes
    return NoRoom(gpu.index, max(0, gpu.free_bytes), freeable, waitable, need)
