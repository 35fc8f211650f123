"""Placing a model on this host's GPUs as they are now: the live readings, less memory
booked for loads in progress, and the residents as eviction.py sees them, planned by
gang.py; then the victims demoted (asleep or unloaded) to make room.

A plan that evicts is put off, with NoRoomYet, when waiting a little gives a cheaper
one (a young model ages past min_residency) or spares the hot set (models outside it
hold memory that frees itself), as long as the caller's deadline leaves time for the
wait and the load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from warmpath_agent.capacity import shape_for
from warmpath_agent.drivers import ModelLoadFailed
from warmpath_agent.eviction import (
    Candidate,
    GpuRoom,
    NoRoom,
    ResidentModel,
    estimated_load_seconds,
    protected_models,
)
from warmpath_agent.gang import plan_gang
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import GangPlan, HostRamShort, ModelShape
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import OFF_GPU_STATES, Residency, ResidencyState
from warmpath_agent.room import ANSWER_MARGIN_SECONDS, NoRoomYet, host_ram_short, no_room
from warmpath_agent.warm_hooks import WarmHooks
from warmpath_agent.warm_tier import kept_like_the_hot_set, room_in_seconds
from warmpath_common.config import ModelSpec
from warmpath_common.errors import Unavailable

__all__ = ["PlacementPlanner"]

logger = logging.getLogger(__name__)


class PlacementPlanner:
    """Chooses GPUs for a model and makes room there. Callers hold `core.placing`, so
    that two placements never book the same memory."""

    def __init__(
        self,
        core: ResidencyCore,
        warm: WarmHooks,
        estimate_shape: Callable[[ModelSpec], ModelShape] | None = None,
    ) -> None:
        """`estimate_shape`: a model's layers and their sizes (footprint.py), for splits
        and offload; None: every model is placed whole on one GPU or across
        tensor_parallel GPUs."""
        self._core = core
        self._warm = warm
        self._estimate_shape = estimate_shape
        self._shapes: dict[str, ModelShape] = {}
        # The last hot set: its members keep their place unless clearly outranked.
        self._hot_set: frozenset[str] = frozenset()

    async def shape(self, spec: ModelSpec, need: int) -> ModelShape:
        """The model's shape for placement: `need` bytes whole, its layers (estimated
        once, from the GGUF), and what its spec allows."""
        layers = self._shapes.get(spec.name)
        if layers is None and self._estimate_shape is not None:
            try:
                layers = await asyncio.to_thread(self._estimate_shape, spec)
            except ModelLoadFailed as error:
                logger.info("%s is placed whole: %s", spec.name, error)
                layers = ModelShape(need)
            self._shapes[spec.name] = layers
        return shape_for(spec, need, layers)

    async def place(
        self, model: str, shape: ModelShape, give_up_at: float, only: tuple[int, ...] = ()
    ) -> tuple[GangPlan, tuple[GpuReading, ...], tuple[str, ...]]:
        """The plan, its GPUs and the models evicted for it. `give_up_at` (monotonic):
        the caller's deadline. `only`: the GPUs it may go on (a sleeping server wakes
        where it sleeps). Raises NoRoomYet when waiting may help, else ResourceExhausted."""
        core = self._core
        # Taken before the reading: a change after it sends a waiter straight back.
        room_version = core.room.version
        readings = {
            gpu.index: gpu
            for gpu in await core.inventory.read()
            if gpu.healthy and (not only or gpu.index in only)
        }
        if not readings:
            raise Unavailable(f"host {core.host} has no healthy GPU to load {model} on")
        now = core.clock()
        host_free = await core.host_free_bytes()
        rooms = self._rooms(readings.values(), model, now, host_free)
        protected = protected_models(rooms, self._candidates(now), incumbents=self._hot_set)
        self._hot_set = protected
        need = shape.total_bytes
        asleep = {m for m, r in core.residents.items() if r.state is ResidencyState.ASLEEP}

        def plan_on(rooms: list[GpuRoom]) -> GangPlan | NoRoom | HostRamShort:
            return plan_gang(
                rooms,
                shape,
                now,
                core.min_residency_seconds,
                model=model,
                protected=kept_like_the_hot_set(protected, rooms, asleep),
                host_free_bytes=host_free,
            )

        plan = plan_on(rooms)
        unload = False
        if isinstance(plan, NoRoom) and not plan.fits_after_waiting and core.warm is not None:
            # A victim that would sleep frees all but what its server keeps asleep: a
            # model that needs a whole GPU may fit only with such victims unloaded.
            # Where waiting can make room with them asleep, it waits instead.
            unloading = plan_on(
                self._rooms(readings.values(), model, now, host_free, sleeping=False)
            )
            if isinstance(unloading, GangPlan):
                plan, unload = unloading, True
        if isinstance(plan, HostRamShort):
            if await self._warm.unload_sleepers(plan.need_bytes - plan.free_bytes, model):
                return await self.place(model, shape, give_up_at, only)
            raise host_ram_short(model, plan)
        if isinstance(plan, NoRoom):
            # A wake on its own GPU: how soon room may come there, if it is to wait.
            soonest = (
                room_in_seconds(rooms[0], plan.need_bytes, now, core.min_residency_seconds)
                if len(rooms) == 1
                else 0.0
            )
            raise no_room(
                model,
                plan,
                shape,
                healthy_gpus=len(readings),
                min_residency_seconds=core.min_residency_seconds,
                room_version=room_version,
                load_seconds=core.expected_load(model, shape.total_bytes),
                room_in_seconds=soonest,
            )
        patience = (
            give_up_at - time.monotonic() - core.expected_load(model, need) - ANSWER_MARGIN_SECONDS
        )
        if 0 < plan.cheaper_in_seconds <= patience:
            raise NoRoomYet(
                f"{model} waits {plan.cheaper_in_seconds:.1f} s for a model loaded less than "
                f"{core.min_residency_seconds:g} s ago to become evictable, rather than evict "
                + ", ".join(v.model for v in plan.victims),
                room_version,
                core.expected_load(model, need),
            )
        if (
            plan.waits_for_unprotected
            and patience > 0
            and not self._warm.victims_sleep(plan.victims, host_free)
        ):
            raise NoRoomYet(
                f"{model} waits for memory held by other models outside the hot set "
                f"({', '.join(sorted(protected)) or 'none'}) to come free, rather than evict "
                + ", ".join(v.model for v in plan.victims if v.model in protected),
                room_version,
                core.expected_load(model, need),
            )
        for victim in plan.victims:
            current = core.residents.get(victim.model)
            if current is None:  # a sleeper an earlier victim's sleep pushed out of host RAM
                continue
            await self._warm.demote(
                current,
                reason=f"evicted to make room for {model} "
                f"(reload cost {victim.reload_cost:.1f} load-s/min)",
                kind="evicted",
                may_sleep=not unload,
            )
        gang = tuple(readings[index] for index in plan.gpu_indexes)
        return plan, gang, tuple(v.model for v in plan.victims)

    def _rooms(
        self,
        readings: Iterable[GpuReading],
        model: str,
        now: float,
        host_free: int | None,
        sleeping: bool = True,
    ) -> list[GpuRoom]:
        """The GPUs as eviction sees them. `sleeping` False: every victim priced as
        unloaded (all its memory freed, its return a load), even one that would sleep."""
        core = self._core
        return [
            GpuRoom(
                index=gpu.index,
                # A live reading cannot see loads still in progress; a simulated
                # one is computed from the book and already includes them.
                free_bytes=gpu.memory_free_bytes
                - (0 if gpu.simulated else core.book.loading_bytes(gpu.index)),
                # Loading and unloading models are never victims, but their memory
                # is on its way to being evictable or free: it counts for waiting.
                # A gang is listed on each of its GPUs, with its share there.
                residents=tuple(
                    self._as_resident(r, now, r.bytes_on(gpu.index), host_free, sleeping)
                    for r in core.residents.values()
                    if gpu.index in r.on_gpus and r.state not in OFF_GPU_STATES
                )
                # A sleeping server's leftover (its CUDA context and the like) is
                # room too: unloading the sleeper frees it.
                + tuple(
                    self._as_resident(r, now, left, host_free, sleeping)
                    for r in core.residents.values()
                    if r.state is ResidencyState.ASLEEP
                    and r.model != model  # a wake needs what it keeps
                    and (left := core.book.bytes_of(r.model, gpu.index))
                ),
            )
            for gpu in readings
        ]

    def _candidates(self, now: float) -> list[Candidate]:
        """Every model asked for recently whose size is known (the hot set's candidates)."""
        core = self._core
        candidates = []
        for model in core.specs:
            demand = core.demand.hot_set_per_minute(model, now)
            resident = core.residents.get(model)
            size = (
                resident.footprint_bytes
                if resident is not None
                else core.measurements.whole(model) or core.estimated.get(model)
            )
            if demand > 0 and size:
                candidates.append(Candidate(model, size, core.expected_load(model, size), demand))
        return candidates

    def _as_resident(
        self,
        residency: Residency,
        now: float,
        size: int,
        host_free: int | None,
        sleeping: bool = True,
    ) -> ResidentModel:
        core = self._core
        if residency.state is ResidencyState.ASLEEP:
            return self._warm.as_victim(residency, now, size)
        # An adopted model was never timed here; it is not free to reload.
        load = residency.load_seconds or estimated_load_seconds(residency.footprint_bytes)
        return ResidentModel(
            model=residency.model,
            size_bytes=(
                self._warm.freed_by_eviction(residency, now, size, host_free) if sleeping else size
            ),
            load_seconds=(
                self._warm.return_seconds(residency, load, now, host_free) if sleeping else load
            ),
            demand_per_minute=core.demand.per_minute(residency.model, now),
            last_used=residency.last_used,
            resident_since=residency.ready_since or self._ready_at(residency, now),
            pinned=residency.pinned,
            in_use=residency.state is not ResidencyState.READY or core.leased(residency.model, now),
            host_bytes=residency.host_bytes,
        )

    def _ready_at(self, residency: Residency, now: float) -> float:
        """When a model still loading or waking is expected ready, from when it started
        (`last_used`) and its expected load or wake; `now` for any other, or when overdue."""
        core = self._core
        if residency.state is not ResidencyState.LOADING:
            return now
        took = core.expected_load(residency.model, residency.footprint_bytes)
        if residency.running is not None and core.warm is not None:  # a server waking
            spec = core.specs[residency.model]
            took = core.warm.wake_seconds(spec, residency.footprint_bytes) or took
        return max(now, residency.last_used + took)
