"""Bringing a model onto its GPUs: one load per model at a time (single flight), from
disk, or a sleeping server woken where it sleeps. Each is placed first (under the
placement lock, which the slow start does not hold), booked while it starts, then
measured and watched once ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed, RunningModel
from warmpath_agent.layouts import Layout
from warmpath_agent.measurement import offloaded_by_server
from warmpath_agent.placement_planner import PlacementPlanner
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import Residency, ResidencyState
from warmpath_agent.room import NoRoomYet
from warmpath_agent.server_exits import ServerExits
from warmpath_agent.sleepers import WarmTier
from warmpath_agent.warm_hooks import WarmHooks
from warmpath_agent.warm_tier import SleepFailed, moves_rather_than_waits
from warmpath_common.config import ModelSpec
from warmpath_common.errors import ResourceExhausted, Unavailable

__all__ = ["Loaded", "Loader"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024

# A load's result: the model ready, and the models evicted to make room for it.
Loaded = tuple[Residency, tuple[str, ...]]


class Loader:
    """Loads and wakes models, one at a time per model."""

    def __init__(
        self,
        core: ResidencyCore,
        planner: PlacementPlanner,
        warm: WarmHooks,
        exits: ServerExits,
    ) -> None:
        self._core = core
        self._planner = planner
        self._warm = warm
        self._exits = exits
        self._loads: dict[str, asyncio.Task[Loaded]] = {}

    def load_task(self, spec: ModelSpec, give_up_at: float) -> asyncio.Task[Loaded]:
        """The one load of `spec` in progress, started if there is none (single flight);
        `give_up_at` (monotonic) is its starter's deadline. It is shielded by callers:
        one that gives up must not abort a load others wait on."""
        task = self._loads.get(spec.name)
        if task is None:
            task = asyncio.create_task(self._load(spec, give_up_at), name=f"load {spec.name}")
            self._loads[spec.name] = task
            task.add_done_callback(lambda done: self._load_ended(spec.name, done))
        return task

    def close(self) -> None:
        """Cancels the loads in progress."""
        for load in list(self._loads.values()):
            load.cancel()

    def _load_ended(self, model: str, task: asyncio.Task[Loaded]) -> None:
        self._loads.pop(model, None)
        if not task.cancelled():
            # Retrieved here so that a load whose callers all gave up logs no warning.
            task.exception()

    def _load_failure(self, model: str, error: ModelLoadFailed) -> Unavailable:
        """What the caller hears: the model, this host and why, but no path on this host
        (the agent's log and state keep the full message)."""
        logger.error("could not load %s: %s", model, error)
        return Unavailable(f"could not load {model} on {self._core.host}: {error.for_caller}")

    async def _load(self, spec: ModelSpec, give_up_at: float) -> Loaded:
        core = self._core
        woken, asleep = await self._wake_if_asleep(spec, give_up_at)
        if woken is not None:
            return woken
        need = core.measurements.whole(spec.name) or core.estimated.get(spec.name)
        if not need:
            try:
                need = await asyncio.to_thread(core.estimate_bytes, spec)
            except ModelLoadFailed as error:
                core.metrics.loads.labels(spec.name, "failed").inc()
                raise self._load_failure(spec.name, error) from error
            # Kept: a model waiting for room asks again at every chance of some.
            core.estimated[spec.name] = need
        shape = await self._planner.shape(spec, need)
        async with core.placing:
            plan, gang, evicted = await self._planner.place(spec.name, shape, give_up_at)
            loading = Residency(
                model=spec.name,
                state=ResidencyState.LOADING,
                gpu_index=gang[0].index,
                gpu_uuid=gang[0].uuid,
                estimated_bytes=need if len(gang) == 1 else sum(plan.gpu_bytes),
                pinned=spec.pinned,
                last_used=core.clock(),
                gpu_indexes=plan.gpu_indexes,
                gpu_uuids=tuple(gpu.uuid for gpu in gang),
                gpu_bytes=plan.gpu_bytes,
                layout=plan.layout,
                layers_on_gpu=plan.layers_on_gpu,
                total_layers=plan.total_layers,
                host_bytes=plan.host_bytes,
                placement_reason=plan.offload_reason,
            )
            if asleep is not None:
                # A page-cache sleeper: this load is its wake; its host booking ends.
                core.book.release(spec.name)
            core.residents[spec.name] = loading
            core.book.book_gang(
                spec.name, dict(zip(plan.gpu_indexes, plan.gpu_bytes, strict=True)), loading=True
            )
            core.book.book_host(spec.name, plan.host_bytes)
        await core.feed.publish(
            f"{spec.name} loading: {loading.description} ({need / _MIB:.0f} MiB estimated)"
            + (f"; {plan.offload_reason}" if plan.offload_reason else "")
        )
        placement = GpuPlacement(
            gang,
            plan.layout,
            plan.shares if len(gang) > 1 else (),
            plan.gpu_layers if plan.layout is Layout.OFFLOAD else None,
            plan.total_layers,
        )
        started = time.monotonic()
        try:
            running = await core.driver.start(spec, gang[0], placement)
        except ModelLoadFailed as error:
            core.metrics.loads.labels(spec.name, "failed").inc()
            core.book.release(spec.name)
            core.residents[spec.name] = replace(
                loading, state=ResidencyState.FAILED, failure_reason=str(error)
            )
            core.room.may_have_changed()
            await core.feed.publish(f"{spec.name} failed to load: {error}")
            raise self._load_failure(spec.name, error) from error
        except BaseException:
            core.book.release(spec.name)
            core.residents.pop(spec.name, None)
            core.room.may_have_changed()
            raise
        load_seconds = time.monotonic() - started
        loading = self._warm.timed(loading, load_seconds, woken=asleep is not None)
        measured = await core.measurements.measure(
            running, whole=plan.layout is not Layout.OFFLOAD and not running.host_bytes
        )
        ready = replace(
            loading,
            state=ResidencyState.READY,
            running=running,
            measured_bytes=measured,
            gpu_bytes=core.measurements.shares(running.model, loading, measured),
            # A wake keeps the last load from disk as the model's load time.
            load_seconds=core.timed_loads.get(spec.name, load_seconds),
            ready_since=core.clock(),
            last_used=core.clock(),
        )
        if running.host_bytes:
            ready = offloaded_by_server(ready, running.host_bytes, plan.shares)
            core.book.book_host(spec.name, running.host_bytes)
        core.residents[spec.name] = ready
        core.book.book_gang(spec.name, ready.bytes_per_gpu, loading=False)
        # Its booking may have shrunk to the measured size, and it starts to age.
        core.room.may_have_changed()
        self._exits.watch(ready)
        await core.feed.publish(
            f"{spec.name} ready ({ready.description}) after {load_seconds:.1f} s"
            + (" (woken from the page cache)" if ready.woken else "")
            + (f" (measured {measured / _MIB:.0f} MiB)" if measured else "")
        )
        return ready, evicted

    async def _wake_if_asleep(
        self, spec: ModelSpec, give_up_at: float
    ) -> tuple[Loaded | None, Residency | None]:
        """Before a load: a sleeping server is woken where it sleeps (the load's result,
        None when it could not be); a page-cache sleeper is returned, for the load that
        follows to count as its wake."""
        asleep = self._core.residents.get(spec.name)
        if asleep is None or asleep.state is not ResidencyState.ASLEEP:
            return None, None
        warm = self._core.warm
        if asleep.running is None or warm is None:
            return None, asleep
        return await self._wake(spec, asleep, asleep.running, warm, give_up_at), None

    async def _wake(
        self,
        spec: ModelSpec,
        asleep: Residency,
        running: RunningModel,
        warm: WarmTier,
        give_up_at: float,
    ) -> Loaded | None:
        """Wakes a sleeping server where it sleeps, making room there as for a load.
        None when it cannot (no room on its GPUs, or the wake failed): it is unloaded
        and the caller loads the model from disk instead."""
        core = self._core
        async with core.placing:
            try:
                # What it still holds asleep is counted used: the wake needs the rest.
                shape = await self._planner.shape(
                    spec, asleep.footprint_bytes - asleep.asleep_gpu_bytes
                )
                _, _, evicted = await self._planner.place(
                    spec.name, shape, give_up_at, asleep.on_gpus
                )
            except NoRoomYet as error:
                if not self._moves(spec, asleep, error.room_in_seconds, warm):
                    raise
                await self._exits.stop(
                    asleep,
                    reason=f"its GPUs ({asleep.where}) have room only in about "
                    f"{error.room_in_seconds:.0f} s: sooner loaded from disk elsewhere",
                    kind="host_ram",
                )
                return None
            except ResourceExhausted:
                await self._exits.stop(
                    asleep, reason=f"no room to wake it on {asleep.where}", kind="host_ram"
                )
                return None
            waking = replace(
                asleep,
                state=ResidencyState.LOADING,
                asleep_bytes=0,
                asleep_gpu_bytes=0,
                sleep_kind=None,
                last_used=core.clock(),  # when its wake started (when it will be ready)
            )
            core.residents[spec.name] = waking
            core.book.release(spec.name)
            core.book.book_gang(spec.name, waking.bytes_per_gpu, loading=True)
        try:
            seconds = await warm.wake_server(spec, running)
        except SleepFailed as error:
            core.metrics.wakes.labels(spec.name, "failed").inc()
            await self._exits.stop(waking, reason=f"its wake failed ({error})", kind="crashed")
            return None
        now = core.clock()
        ready = self._warm.woken(
            replace(waking, state=ResidencyState.READY, ready_since=now, last_used=now), seconds
        )
        core.residents[spec.name] = ready
        core.book.book_gang(spec.name, ready.bytes_per_gpu, loading=False)
        core.room.may_have_changed()
        await core.feed.publish(f"{spec.name} woken from sleep on {ready.where} in {seconds:.1f} s")
        return ready, evicted

    def _moves(self, spec: ModelSpec, asleep: Residency, room_in: float, warm: WarmTier) -> bool:
        """A sleeping server whose GPUs have room only in `room_in` seconds is unloaded
        and loaded elsewhere when that is sooner (warm_tier.moves_rather_than_waits)."""
        size = asleep.footprint_bytes
        wake = warm.wake_seconds(spec, size)
        load = self._core.expected_load(spec.name, size)
        return wake is not None and moves_rather_than_waits(room_in, wake, load)
