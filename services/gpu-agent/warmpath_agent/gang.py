"""Choosing a placement that may span GPUs: a gang of one host's GPUs, or a partial
offload to host RAM (the layouts and their arithmetic: layouts.py).

The shared placement code (with eviction.py, whose victim choice, min_residency,
hot set and waiting rules it reuses), run by the agent (placement_planner.py) and by the
placement simulator (bench/placement_gangs.py). A placement is a set of GPUs on one host
(the gang) and a layout, tried in this order:

1. one GPU: the model fits on one GPU once this agent's unpinned models are gone
   (plan_placement, unchanged);
2. layer split (llama.cpp `--split-mode layer --tensor-split`): over the fewest
   GPUs it fits on, layers shared in proportion to each GPU's room;
3. tensor parallel N (vLLM, SGLang): exactly N GPUs, each with room for 1/N;
4. partial offload: K of the model's L layers on GPUs, the rest in host RAM. The
   last resort: only when no GPU-only placement exists even after waiting, or,
   for `offload: preferred`, when a GPU-only placement would evict and an
   offload on free memory would not (the plan says so in `offload_reason`).

Room is made on every GPU of the gang or on none: victims are chosen per GPU
with eviction.choose_victims, and a victim spanning several GPUs of the gang frees
its share on each. Host RAM is a resource: an offload needs its offloaded layers
plus the GGUF's page cache there, and a plan that would exhaust it is refused
(HostRamShort) with the figures. docs/big-models.md explains the choices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace

from warmpath_agent.eviction import (
    GpuRoom,
    NoRoom,
    PlacementPlan,
    ResidentModel,
    choose_victims,
    no_room_on,
    plan_placement,
    with_waiting,
)
from warmpath_agent.layouts import (
    GangNeeds,
    GangPlan,
    HostRamShort,
    Layout,
    ModelShape,
    Offload,
    offload_plan,
    proportional,
    split_layers,
)

__all__ = ["plan_gang"]


def plan_gang(
    gpus: Sequence[GpuRoom],
    shape: ModelShape,
    now: float,
    min_residency_seconds: float,
    *,
    model: str = "",
    protected: frozenset[str] = frozenset(),
    host_free_bytes: int | None = None,
) -> GangPlan | NoRoom | HostRamShort:
    """Where `model` goes: a GangPlan, or why not now (NoRoom: waiting may help, see
    NoRoom.fits_after_waiting) or not at all with host RAM as it is (HostRamShort).
    `gpus` may list a gang resident once per GPU it spans (its share there);
    `host_free_bytes` None: host RAM is not accounted."""
    gpu_only = _gpu_only(gpus, shape, now, min_residency_seconds, model, protected)
    if isinstance(gpu_only, GangPlan) and not (
        gpu_only.victims and shape.offload is Offload.PREFERRED
    ):
        return gpu_only
    if shape.offload is Offload.NEVER or not shape.by_layer or shape.tensor_parallel > 1:
        return (
            gpu_only
            if gpu_only is not None
            else _no_room(gpus, shape, now, min_residency_seconds, never=True)
        )
    if isinstance(gpu_only, NoRoom) and gpu_only.fits_after_waiting:
        return gpu_only
    offload = _offload(
        gpus,
        shape,
        now,
        min_residency_seconds,
        protected,
        evict=not isinstance(gpu_only, GangPlan),
    )
    if isinstance(gpu_only, GangPlan):
        if offload is None or offload.victims:
            return gpu_only
        offload = replace(
            offload,
            offload_reason=f"offload preferred: evicting {_named(gpu_only.victims)} "
            f"(reload cost {gpu_only.cost:.1f} load-s/min) judged costlier than running "
            f"{offload.offloaded_layers} of {shape.layers} layers from host RAM",
        )
    if offload is None:
        if gpu_only is not None:
            return gpu_only
        # No GPU has room for one layer now: waiting helps if busy, loading or young
        # models hold it (they free it by themselves), not if pinned or foreign memory does.
        one_layer = shape.gpu_bytes(1)
        never = not any(_capacity(g) >= one_layer for g in gpus)
        return _no_room(gpus, shape, now, min_residency_seconds, never=never, need=one_layer)
    if host_free_bytes is not None and offload.host_bytes > host_free_bytes:
        if isinstance(gpu_only, GangPlan):
            return gpu_only
        return _make_host_room(
            gpus, shape, now, min_residency_seconds, protected, host_free_bytes, offload
        )
    return offload


def _make_host_room(
    gpus: Sequence[GpuRoom],
    shape: ModelShape,
    now: float,
    min_residency_seconds: float,
    protected: frozenset[str],
    host_free_bytes: int,
    offload: GangPlan,
) -> GangPlan | NoRoom | HostRamShort:
    """Host RAM is short for the offload: evict offloaded models holding it (cheapest
    first, as for GPU memory), wait while busy or young ones do, else HostRamShort."""
    holders = {r.model: r for g in gpus for r in g.residents if r.host_bytes > 0}
    as_host = [replace(r, size_bytes=r.host_bytes) for r in holders.values()]
    shortfall = offload.host_bytes - host_free_bytes
    chosen = choose_victims(as_host, shortfall, now, min_residency_seconds, protected)
    if chosen is not None:
        gone = {v.model for v in chosen}
        rooms = [
            GpuRoom(
                g.index,
                g.free_bytes + sum(r.size_bytes for r in g.residents if r.model in gone),
                tuple(r for r in g.residents if r.model not in gone),
            )
            for g in gpus
        ]
        freed = sum(holders[m].host_bytes for m in gone)
        again = _offload(rooms, shape, now, min_residency_seconds, protected, evict=True)
        if again is not None and again.host_bytes <= host_free_bytes + freed:
            victims = tuple(holders[v.model] for v in chosen) + again.victims
            return replace(
                again,
                victims=tuple(sorted(victims, key=lambda r: r.last_used)),
                protected_victims=sum(v.model in protected for v in victims),
                offload_reason=f"{again.offload_reason}; evicting {_named(victims)} "
                "for its host RAM",
            )
    unpinned = sum(r.host_bytes for r in holders.values() if not r.pinned)
    if chosen is None and unpinned >= shortfall:
        # Busy, loading or young offloaded models hold it: they free it by themselves.
        return _no_room(gpus, shape, now, min_residency_seconds, need=0)
    return HostRamShort(offload.host_bytes, host_free_bytes, offload.gpu_layers, shape.layers)


def _named(victims: Sequence[ResidentModel]) -> str:
    return ", ".join(v.model for v in victims)


def _capacity(gpu: GpuRoom) -> int:
    """What the GPU would have with every unpinned model of this agent gone."""
    return gpu.free_bytes + sum(r.size_bytes for r in gpu.residents if not r.pinned)


def _gpu_only(
    gpus: Sequence[GpuRoom],
    shape: ModelShape,
    now: float,
    min_residency_seconds: float,
    model: str,
    protected: frozenset[str],
) -> GangPlan | NoRoom | None:
    """The GPU-only plan, NoRoom when waiting is needed, None when no GPU set can ever
    hold the model as things are (pinned models and foreign memory stay)."""
    if shape.tensor_parallel > 1:
        share = -(-shape.total_bytes // shape.tensor_parallel)
        if (
            len(gpus) < shape.tensor_parallel
            or sum(_capacity(g) >= share for g in gpus) < shape.tensor_parallel
        ):
            return None
        return _with_waiting(
            gpus,
            now,
            min_residency_seconds,
            model,
            protected,
            lambda at: _best_on_sets(
                gpus,
                shape.tensor_parallel,
                lambda rooms, _at: ([share] * len(rooms), ()),
                at,
                min_residency_seconds,
                protected,
                Layout.TENSOR_PARALLEL,
            ),
            shape,
        )
    splits = shape.splittable and shape.by_layer
    waiting: NoRoom | None = None
    if any(_capacity(g) >= shape.total_bytes for g in gpus) or not splits:
        single = plan_placement(
            gpus, shape.total_bytes, now, min_residency_seconds, model=model, protected=protected
        )
        if not isinstance(single, NoRoom):
            return _from_single(single, shape)
        if single.fits_after_waiting or not splits:
            return single
        # Pinned models or foreign memory stand in the way on one GPU: maybe a split.
        waiting = single
    for size in range(2, len(gpus) + 1):
        capacities = sorted((_capacity(g) for g in gpus), reverse=True)[:size]
        if sum(shape.layers_fitting(c) for c in capacities) < shape.layers:
            continue

        def best(at: float, size: int = size) -> GangPlan | None:
            return _best_on_sets(
                gpus,
                size,
                lambda rooms, at_: split_layers(rooms, shape, at_, min_residency_seconds),
                at,
                min_residency_seconds,
                protected,
                Layout.LAYER_SPLIT,
            )

        plan = _with_waiting(gpus, now, min_residency_seconds, model, protected, best, shape)
        if isinstance(plan, GangPlan):
            return plan
        # More GPUs may hold it now where fewer need waiting: the fewest that can.
        if waiting is None or (plan.fits_after_waiting and not waiting.fits_after_waiting):
            waiting = plan
    return waiting


def _from_single(plan: PlacementPlan, shape: ModelShape) -> GangPlan:
    return GangPlan(
        Layout.SINGLE,
        (plan.gpu_index,),
        (shape.total_bytes,),
        plan.victims,
        total_layers=shape.layers,
        cheaper_in_seconds=plan.cheaper_in_seconds,
        waits_for_unprotected=plan.waits_for_unprotected,
        protected_victims=plan.protected_victims,
    )


def _with_waiting(
    gpus: Sequence[GpuRoom],
    now: float,
    min_residency_seconds: float,
    model: str,
    protected: frozenset[str],
    best: Callable[[float], GangPlan | None],
    shape: ModelShape,
) -> GangPlan | NoRoom:
    """plan_placement's waiting rules for a gang (eviction.with_waiting), or NoRoom."""
    plan = with_waiting(gpus, now, min_residency_seconds, model, protected, best)
    return _no_room(gpus, shape, now, min_residency_seconds) if plan is None else plan


def _best_on_sets(
    gpus: Sequence[GpuRoom],
    size: int,
    needs: Callable[[Sequence[GpuRoom], float], GangNeeds | None],
    now: float,
    min_residency_seconds: float,
    protected: frozenset[str],
    layout: Layout,
    total_layers: int = 0,
) -> GangPlan | None:
    """The best gang of `size` GPUs: one needing no eviction with the most free memory
    left, else the cheapest eviction (hot-set models first, then reload cost)."""
    plans = []
    for rooms in itertools.combinations(sorted(gpus, key=lambda g: g.index), size):
        wanted = needs(rooms, now)
        if wanted is None:
            continue
        per_gpu, layers = wanted
        victims = _make_room(rooms, per_gpu, now, min_residency_seconds, protected)
        if victims is None:
            continue
        free_left = sum(g.free_bytes for g in rooms) - sum(per_gpu)
        plans.append(
            (
                GangPlan(
                    layout,
                    tuple(g.index for g in rooms),
                    tuple(per_gpu),
                    victims,
                    layers_on_gpu=layers,
                    total_layers=sum(layers) or total_layers,
                    protected_victims=sum(v.model in protected for v in victims),
                ),
                free_left,
            )
        )
    if not plans:
        return None
    best, _ = min(plans, key=lambda p: (p[0].rank, len(p[0].victims), -p[1], p[0].gpu_indexes))
    return best


def _make_room(
    rooms: Sequence[GpuRoom],
    per_gpu: Sequence[int],
    now: float,
    min_residency_seconds: float,
    protected: frozenset[str],
) -> tuple[ResidentModel, ...] | None:
    """Victims making `per_gpu` room on every GPU of the gang, or None if some GPU cannot
    get it. A victim spanning several of these GPUs frees its share on each."""
    free = [g.free_bytes for g in rooms]
    chosen: dict[str, ResidentModel] = {}
    for position, gpu in enumerate(rooms):
        left = [r for r in gpu.residents if r.model not in chosen]
        victims = choose_victims(
            left, per_gpu[position] - free[position], now, min_residency_seconds, protected
        )
        if victims is None:
            return None
        for victim in victims:
            chosen[victim.model] = victim
            for other, other_gpu in enumerate(rooms):
                for resident in other_gpu.residents:
                    if resident.model == victim.model:
                        free[other] += resident.size_bytes
    return tuple(sorted(chosen.values(), key=lambda r: r.last_used))


def _offload(
    gpus: Sequence[GpuRoom],
    shape: ModelShape,
    now: float,
    min_residency_seconds: float,
    protected: frozenset[str],
    *,
    evict: bool,
) -> GangPlan | None:
    """K of L layers on GPUs, the rest in host RAM: as many layers as free memory holds,
    over every GPU with room for one (llama.cpp spreads them so); with nothing free and
    `evict`, the cheapest room for one layer on one GPU, filled as far as it then goes."""
    fits = {g.index: min(shape.layers_fitting(g.free_bytes), shape.layers - 1) for g in gpus}
    holding = [g for g in sorted(gpus, key=lambda g: g.index) if fits[g.index] > 0]
    if holding:
        limits = [fits[g.index] for g in holding]
        layers = proportional(min(shape.layers - 1, sum(limits)), limits)
        return offload_plan(holding, layers, shape, ())
    if not evict:
        return None
    one_layer = shape.gpu_bytes(1)
    best = _best_on_sets(
        gpus,
        1,
        lambda rooms, _at: ([one_layer], (1,)),
        now,
        min_residency_seconds,
        protected,
        Layout.OFFLOAD,
    )
    if best is None:
        return None
    gpu = next(g for g in gpus if g.index == best.gpu_index)
    room = gpu.free_bytes + sum(v.size_bytes for v in best.victims)
    on_gpu = min(max(1, shape.layers_fitting(room)), shape.layers - 1)
    return replace(
        offload_plan([gpu], [on_gpu], shape, best.victims),
        protected_victims=best.protected_victims,
    )


def _no_room(
    gpus: Sequence[GpuRoom],
    shape: ModelShape,
    now: float,
    min_residency_seconds: float,
    *,
    never: bool = False,
    need: int | None = None,
) -> NoRoom:
    """NoRoom summed over the host's GPUs (a gang may use them all); `need`: the bytes
    waiting must free (the whole model unless given)."""
    need = shape.total_bytes if need is None else need
    each = [no_room_on(gpu, need, now, min_residency_seconds) for gpu in gpus]
    return NoRoom(
        min((g.index for g in gpus), default=-1),
        sum(r.free_bytes for r in each),
        sum(r.freeable_bytes for r in each),
        sum(r.waitable_bytes for r in each),
        need,
        no_gpu_set=never,
    )
