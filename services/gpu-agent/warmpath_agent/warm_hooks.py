"""The warm tier's side of residency: warm_tier.py decides, sleepers.py acts, and these
hooks record it. A model leaving its GPUs (evicted, or idle past its keep-alive) is
put to sleep in host RAM when sleeping pays, else unloaded; host RAM pressure and the
asleep keep-alive unload sleepers; a wake is timed as a wake, not a load.
(The wake itself is placed like a load: loading.py.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from warmpath_agent.eviction import ResidentModel
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import Residency, ResidencyState
from warmpath_agent.server_exits import ServerExits
from warmpath_agent.warm_tier import (
    Sleeper,
    SleepFailed,
    SleepKind,
    return_seconds,
    sleepers_to_unload,
    sleeps_freely,
)
from warmpath_common.config import ModelSpec

__all__ = ["WarmHooks"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


class WarmHooks:
    """Sleep or unload, and what the placement needs to know of sleepers. With no warm
    tier, every model leaving its GPUs is unloaded."""

    def __init__(self, core: ResidencyCore, exits: ServerExits) -> None:
        self._core = core
        self._exits = exits

    async def demote(
        self, residency: Residency, *, reason: str, kind: str, may_sleep: bool = True
    ) -> None:
        """A model leaves its GPUs: asleep in host RAM when the warm tier says so (and
        `may_sleep`: the placement needs none of its GPU memory kept), else unloaded. A
        sleeper evicted for what its server keeps on a GPU is unloaded."""
        if residency.state is ResidencyState.ASLEEP:
            await self._exits.stop(residency, reason=f"asleep, {reason}", kind=kind)
        elif not may_sleep or not await self._put_to_sleep(residency, reason):
            await self._exits.stop(residency, reason=reason, kind=kind)

    def _sleeper(self, residency: Residency, now: float) -> Sleeper | None:
        core = self._core
        spec = core.specs[residency.model]
        size = residency.footprint_bytes
        wake = None if core.warm is None else core.warm.wake_seconds(spec, size)
        if wake is None:
            return None
        return Sleeper(
            model=residency.model,
            host_bytes=residency.asleep_bytes or size,
            load_seconds=core.expected_load(residency.model, size),
            wake_seconds=wake,
            demand_per_minute=core.demand.per_minute(residency.model, now),
        )

    def _sleepers(self, now: float) -> list[Sleeper]:
        return [
            sleeper
            for r in self._core.residents.values()
            if r.state is ResidencyState.ASLEEP and (sleeper := self._sleeper(r, now)) is not None
        ]

    def _could_sleep(self, residency: Residency, now: float) -> Sleeper | None:
        """The model as a sleeper, if its server could sleep were it to leave its GPUs now.
        None for a server already asleep: leaving its GPUs now means unloading it."""
        if residency.state is ResidencyState.ASLEEP:
            return None
        sleeper = self._sleeper(residency, now)
        if sleeper is None or residency.running is None or self._core.warm is None:
            return None
        return sleeper

    def freed_by_eviction(
        self, residency: Residency, now: float, size: int, host_free: int | None
    ) -> int:
        """What evicting it frees on a GPU: less what its server would keep asleep."""
        sleeper = self._could_sleep(residency, now)
        warm = self._core.warm
        if sleeper is None or warm is None:
            return size
        spec = self._core.specs[residency.model]
        return warm.freed_by_eviction(spec, size, sleeper, self._sleepers(now), host_free)

    def return_seconds(
        self, residency: Residency, load_seconds: float, now: float, host_free: int | None
    ) -> float:
        """What bringing the model back would cost if it left its GPUs now
        (warm_tier.return_seconds: the eviction cost model, one tier down)."""
        sleeper = self._could_sleep(residency, now)
        if sleeper is None:
            return load_seconds
        return min(load_seconds, return_seconds(sleeper, self._sleepers(now), host_free))

    def victims_sleep(self, victims: Sequence[ResidentModel], host_free: int | None) -> bool:
        """Every victim would sleep in free host RAM (its return a wake, not a load):
        then waiting for room, rather than evict a hot-set model, buys little."""
        now = self._core.clock()
        return bool(victims) and all(
            (current := self._core.residents.get(victim.model)) is not None
            and (sleeper := self._could_sleep(current, now)) is not None
            and sleeps_freely(sleeper, self._sleepers(now), host_free)
            for victim in victims
        )

    def as_victim(self, residency: Residency, now: float, size: int) -> ResidentModel:
        """A sleeper holding `size` bytes of a GPU (what its server keeps asleep), as
        eviction sees it: unloading it frees those and its host RAM, and its next request
        loads from disk instead of waking (that difference is what it costs)."""
        sleeper = self._sleeper(residency, now)
        lost = 0.0 if sleeper is None else sleeper.load_seconds - sleeper.wake_seconds
        return ResidentModel(
            model=residency.model,
            size_bytes=size,
            load_seconds=max(lost, 0.0),
            demand_per_minute=self._core.demand.per_minute(residency.model, now),
            last_used=residency.last_used,
            resident_since=residency.ready_since or now,
            pinned=residency.pinned,
            in_use=self._core.leased(residency.model, now),
            host_bytes=residency.asleep_bytes,
        )

    def is_asleep(self, model: str) -> bool:
        current = self._core.residents.get(model)
        return current is not None and current.state is ResidencyState.ASLEEP

    async def put_to_sleep(self, residency: Residency, reason: str) -> bool:
        """An operator's request: asleep in host RAM where the warm tier can, else False
        (the caller unloads it)."""
        return await self._put_to_sleep(residency, reason, asked=True)

    async def _put_to_sleep(
        self, residency: Residency, reason: str, *, asked: bool = False
    ) -> bool:
        core = self._core
        model = residency.model
        now = core.clock()
        leaving = self._sleeper(residency, now)
        running = residency.running
        if core.warm is None or leaving is None or running is None:
            return False
        host_free = await core.host_free_bytes()
        demotion = core.warm.decide(leaving, self._sleepers(now), host_free, asked=asked)
        if not demotion.sleep:
            logger.info("%s is unloaded rather than put to sleep: %s", model, demotion.reason)
            return False
        for name in demotion.unload_sleepers:
            await self._exits.stop(
                core.residents[name],
                reason=f"unloaded from host RAM to make room for {model} asleep",
                kind="host_ram",
            )
        core.residents[model] = replace(residency, state=ResidencyState.UNLOADING)
        try:
            kind, still_running, host_bytes = await core.warm.put_to_sleep(
                core.specs[model], running, core.driver
            )
        except SleepFailed as error:
            logger.warning("%s could not be put to sleep, so it is unloaded: %s", model, error)
            core.residents[model] = residency
            return False
        held = host_bytes or leaving.host_bytes
        left: dict[int, int] = {}
        if still_running is not None:
            left = await core.warm.held_on_gpus(
                still_running, residency.bytes_per_gpu, core.inventory
            )
        core.book.release(model)
        core.book.book_host(model, held)
        core.book.book_gang(model, left, loading=False)  # freed when it is unloaded
        core.residents[model] = replace(
            residency,
            state=ResidencyState.ASLEEP,
            running=still_running,
            asleep_bytes=held,
            asleep_gpu_bytes=sum(left.values()),
            sleep_kind=kind,
            woken=False,
        )
        core.metrics.sleeps.labels(model, kind.value).inc()
        core.room.may_have_changed()
        await core.feed.publish(
            f"{model} asleep in host RAM ({held / _MIB:.0f} MiB, "
            + (
                f"its server sleeps, keeping {sum(left.values()) / _MIB:.0f} MiB on its GPUs"
                if still_running is not None
                else "its file in the page cache"
            )
            + f") off {residency.where}: {reason}; {demotion.reason}"
        )
        return True

    async def unload_sleepers(self, shortfall: int, model: str) -> bool:
        """Host RAM pressure: unloads sleepers freeing `shortfall` bytes, least value per
        byte first; False (and none unloaded) when all of them would not be enough."""
        chosen = sleepers_to_unload(self._sleepers(self._core.clock()), shortfall)
        if not chosen:
            return False
        for name in chosen:
            await self._exits.stop(
                self._core.residents[name],
                reason=f"unloaded from host RAM to make room for {model}",
                kind="host_ram",
            )
        return True

    async def expire_asleep(self, residency: Residency, idle: float) -> bool:
        """Unloads a sleeper idle past its keep-alive and the warm tier's; True when
        `residency` is asleep (expired or not)."""
        warm = self._core.warm
        if residency.state is not ResidencyState.ASLEEP or warm is None:
            return residency.state is ResidencyState.ASLEEP
        limit = (
            self._core.specs[residency.model].keep_alive_seconds + warm.asleep_keep_alive_seconds
        )
        if idle > limit:
            await self._exits.stop(
                residency, reason=f"asleep and unused for {idle:.0f} s", kind="keep_alive"
            )
        return True

    def timed(self, loading: Residency, seconds: float, *, woken: bool) -> Residency:
        """Records how long a load took: a reload from the page cache times the wake,
        not a load from disk."""
        core = self._core
        if woken and core.warm is not None:
            return self.woken(loading, core.warm.record_wake(loading.model, seconds))
        core.timed_loads[loading.model] = seconds
        core.metrics.loads.labels(loading.model, "ok").inc()
        core.metrics.load_seconds.labels(loading.model).observe(seconds)
        return loading

    def woken(self, residency: Residency, wake_seconds: float) -> Residency:
        """Counts a wake that took `wake_seconds`; the residency says it was woken."""
        self._core.metrics.wakes.labels(residency.model, "ok").inc()
        self._core.metrics.wake_seconds.labels(residency.model).observe(wake_seconds)
        return replace(residency, woken=True, wake_seconds=wake_seconds)

    def adopted_asleep(self, residency: Residency, spec: ModelSpec) -> Residency:
        """A server adopted asleep: its weights hold host RAM, not GPU memory. What NVML
        saw of it asleep says nothing of what it needs awake."""
        self._core.measurements.forget(spec.name)
        size = int(spec.memory) if spec.memory else residency.estimated_bytes
        self._core.book.book_host(spec.name, size)
        return replace(
            residency,
            state=ResidencyState.ASLEEP,
            estimated_bytes=size,
            measured_bytes=0,
            asleep_bytes=size,
            sleep_kind=SleepKind.SERVER,
        )
