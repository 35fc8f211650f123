"""Which models are resident on this host's GPUs, and the rules for changing that.

The ResidencyManager is the only writer of residency. Its invariants:

* one load per model at a time: concurrent `ensure_loaded` calls share it
  (single flight), and a caller that gives up does not abort the load;
* a load never blocks requests for other models: only placement (choosing a
  GPU and booking memory) is serialised, the slow start is not;
* free memory comes from the live GPU reading; memory booked for loads still
  in progress is subtracted because the reading cannot see it yet;
* placement and eviction follow eviction.py: never a pinned model or one
  resident for less than min_residency; models outside the hot set before
  those in it (the manager keeps the last hot set, whose members hold their
  place unless clearly outranked); otherwise the lowest expected reload cost
  (load time x how soon the model is expected to be asked for again);
* a model that does not fit *now*, but would once requests in flight end, loads
  finish or young models age past min_residency, waits for room (within the
  caller's deadline, less the time the load itself needs) instead of failing:
  woken whenever memory is freed, a load ends, or a lease or min_residency runs
  out. A model outside the hot set also waits, rather than evict a hot one,
  while other models outside it hold memory that frees itself; when its wait
  budget runs out it evicts after all. RESOURCE_EXHAUSTED only when waiting
  cannot help (pinned models or memory the agent does not own stand in the
  way) or the deadline runs out. Waiting holds no lock: requests for resident
  models are answered meanwhile;
* a server that dies unasked is marked failed (never silently reloaded): its
  watcher notices, or a caller that could not reach it asks with `verify` and
  the driver checks at once, so the caller's own call loads it again;
* a server that runs but stops answering is found by server_watch.py's probes:
  unresponsive (refused to callers, never evicted) until it answers again, or
  stopped and marked failed after the restart grace, like a crashed one;
* with the warm tier on, a model leaving its GPUs (evicted, or idle past its
  keep-alive) is put to sleep in host RAM when warm_tier.py says sleeping pays,
  else unloaded; the next request wakes it. Nothing but a request wakes it: probes,
  state streams and checks leave an asleep model alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from opentelemetry import trace

from warmpath_agent.capacity import shape_for
from warmpath_agent.change_feed import ChangeFeed
from warmpath_agent.demand import DemandTracker
from warmpath_agent.drivers import GpuPlacement, ModelDriver, ModelLoadFailed, RunningModel
from warmpath_agent.eviction import (
    Candidate,
    GpuRoom,
    NoRoom,
    ResidentModel,
    estimated_load_seconds,
    protected_models,
)
from warmpath_agent.exit_watch import ExitWatchers
from warmpath_agent.gang import (
    GangPlan,
    HostRamShort,
    Layout,
    ModelShape,
    plan_gang,
)
from warmpath_agent.inventory import GpuInventory, GpuReading, HostMemory, MemoryBook
from warmpath_agent.measurement import GpuMeasurements, offloaded_by_server
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.residents import (
    OFF_GPU_STATES,
    SERVING_STATES,
    HostState,
    LoadOutcome,
    Residency,
    ResidencyState,
)
from warmpath_agent.room import NoRoomYet, RoomSignal, host_ram_short, no_room
from warmpath_agent.sleepers import WarmTier
from warmpath_agent.warm_tier import (
    Sleeper,
    SleepFailed,
    SleepKind,
    return_seconds,
    sleepers_to_unload,
    sleeps_freely,
)
from warmpath_common.config import ModelSpec
from warmpath_common.errors import (
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    ResourceExhausted,
    Unavailable,
)

__all__ = [
    "MAX_LEASE_SECONDS",
    "MAX_ROOM_WAIT_SECONDS",
    "ResidencyManager",
]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

_MIB = 1024 * 1024
# A lease longer than this would let a dead router pin a model for too long.
MAX_LEASE_SECONDS = 300.0
# A caller with no deadline waits for room no longer than a lease can last.
MAX_ROOM_WAIT_SECONDS = MAX_LEASE_SECONDS
# Stop waiting for room this long before the load could no longer finish in time,
# so that the caller hears RESOURCE_EXHAUSTED (and may fall back) before its deadline.
_ANSWER_MARGIN_SECONDS = 1.0


class ResidencyManager:
    def __init__(
        self,
        host: str,
        specs: Mapping[str, ModelSpec],
        inventory: GpuInventory,
        driver: ModelDriver,
        *,
        book: MemoryBook,
        estimate_bytes: Callable[[ModelSpec], int],
        metrics: AgentMetrics,
        min_residency_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        estimate_shape: Callable[[ModelSpec], ModelShape] | None = None,
        host_memory: HostMemory | None = None,
        warm_tier: WarmTier | None = None,
    ) -> None:
        """`estimate_shape`: a model's layers and their sizes (footprint.py), for splits
        and offload; None: every model is placed whole on one GPU or across
        tensor_parallel GPUs. `host_memory`: None, host RAM is not accounted.
        `warm_tier`: None, evicted models are always unloaded."""
        self._warm = warm_tier
        self._estimate_shape = estimate_shape
        self._shapes: dict[str, ModelShape] = {}
        self._host_memory = host_memory
        self._min_residency = min_residency_seconds
        self._demand = DemandTracker()
        self._leases: dict[str, float] = {}
        self._metrics = metrics
        self.host = host
        self.feed = ChangeFeed()
        self._specs = dict(specs)
        self._inventory = inventory
        self._driver = driver
        self._book = book
        self._estimate_bytes = estimate_bytes
        self._clock = clock
        self._residents: dict[str, Residency] = {}
        self._loads: dict[str, asyncio.Task[tuple[Residency, tuple[str, ...]]]] = {}
        self._placement = asyncio.Lock()
        self._watchers = ExitWatchers()
        self._measurements = GpuMeasurements(inventory)
        self._estimated: dict[str, int] = {}
        self._timed_loads: dict[str, float] = {}
        self._gpu_healthy: dict[int, bool] = {}
        # The last hot set: its members keep their place unless clearly outranked.
        self._hot_set: frozenset[str] = frozenset()
        # Bumped whenever memory may have become available; room waiters watch it.
        self._room = RoomSignal()

    # -- queries ---------------------------------------------------------

    async def state(self) -> HostState:
        gpus = tuple(await self._inventory.read())
        return HostState(
            host=self.host,
            simulated=self._inventory.simulated,
            gpus=gpus,
            models=tuple(sorted(self._residents.values(), key=lambda r: r.model)),
            servable_models=tuple(sorted(self._specs)),
            observed_at=self._clock(),
        )

    async def watch_gpus(self) -> tuple[GpuReading, ...]:
        """Reads the GPUs and puts on the feed each GPU that turned unhealthy or
        healthy again since the last call (and any unhealthy at the first)."""
        gpus = tuple(await self._inventory.read())
        for gpu in gpus:
            was_healthy = self._gpu_healthy.get(gpu.index, True)
            self._gpu_healthy[gpu.index] = gpu.healthy
            if gpu.healthy != was_healthy:
                await self.feed.publish(
                    f"GPU {gpu.index} healthy again"
                    if gpu.healthy
                    else f"GPU {gpu.index} unhealthy: {gpu.unhealthy_reason}"
                )
        return gpus

    # -- commands --------------------------------------------------------

    async def ensure_loaded(
        self,
        model: str,
        warm_requests: int = 0,
        lease_seconds: float = 0.0,
        deadline_seconds: float | None = 0.0,
        verify: bool = False,
    ) -> LoadOutcome:
        """Makes `model` resident. `warm_requests`: requests the caller served from it
        without asking (they count towards its demand, hence its eviction cost).
        `lease_seconds`: the caller has requests in flight on it for that long.
        `deadline_seconds`: how long the caller will wait for the answer, so how long
        a model that does not fit yet may wait for room (0: answer at once; None: no
        deadline, wait up to MAX_ROOM_WAIT_SECONDS). `verify`: the caller could not
        reach the model's server; if it is ready here, the driver checks that server
        now, and one found down is marked failed and loaded again."""
        if not 0.0 <= lease_seconds <= MAX_LEASE_SECONDS:  # NaN fails too
            raise InvalidRequest(
                f"lease_seconds must be between 0 and {MAX_LEASE_SECONDS:g} "
                f"(got {lease_seconds:g}); renew a lease rather than take a long one"
            )
        with _tracer.start_as_current_span(f"ensure_loaded {model}") as span:
            span.set_attribute("warmpath.model", model)
            self._spec(model)
            now = self._clock()
            self._demand.record(model, now, max(1, warm_requests))
            if lease_seconds > 0:
                self._leases[model] = max(self._leases.get(model, 0.0), now + lease_seconds)
            if verify:
                await self._verify(model, span)
            outcome = await self._ensure_loaded(model, span, deadline_seconds)
            residency = outcome.residency
            span.set_attributes(
                {
                    "warmpath.cold_start": outcome.cold_start,
                    "warmpath.woken": outcome.woken,
                    "warmpath.tier": "gpu"
                    if not outcome.cold_start
                    else "host_ram"
                    if outcome.woken
                    else "disk",
                    "warmpath.load_seconds": outcome.load_seconds,
                    "warmpath.evicted": list(outcome.evicted),
                    "warmpath.gpu.index": residency.gpu_index,
                    "warmpath.gpu.uuid": residency.gpu_uuid,
                    "warmpath.gpu.indexes": list(residency.on_gpus),
                    "warmpath.gpu.uuids": list(residency.gpu_uuids or (residency.gpu_uuid,)),
                    "warmpath.placement.layout": residency.layout.value,
                    "warmpath.placement": residency.description,
                    "warmpath.placement.expected_slowdown": residency.expected_slowdown,
                    "warmpath.memory.estimated_bytes": residency.estimated_bytes,
                    "warmpath.memory.measured_bytes": residency.measured_bytes,
                }
            )
            return outcome

    async def _ensure_loaded(
        self, model: str, span: trace.Span, deadline_seconds: float | None
    ) -> LoadOutcome:
        spec = self._spec(model)
        current = self._residents.get(model)
        if current is not None and current.state is ResidencyState.READY:
            touched = replace(current, last_used=self._clock())
            self._residents[model] = touched
            return LoadOutcome(touched, cold_start=False, load_seconds=0.0, evicted=())
        if current is not None and current.state is ResidencyState.UNRESPONSIVE:
            # Loading it again beside the hung server would book its memory twice.
            raise Unavailable(
                f"{model}'s server on {self.host} is unresponsive ({current.failure_reason})"
            )
        span.set_attribute("warmpath.memory.free_before_bytes", await self._total_free())
        started = time.monotonic()
        give_up_at = started + (
            MAX_ROOM_WAIT_SECONDS if deadline_seconds is None else max(0.0, deadline_seconds)
        )
        evicted: tuple[str, ...]
        while True:
            current = self._residents.get(model)
            if current is not None and current.state is ResidencyState.READY:
                # Loaded by another caller's attempt while this one waited for room.
                residency, evicted = current, ()
                break
            try:
                residency, evicted = await asyncio.shield(self._load_task(spec, give_up_at))
                break
            except NoRoomYet as no_room:
                waited = time.monotonic() - started
                budget = (
                    give_up_at - time.monotonic() - no_room.load_seconds - _ANSWER_MARGIN_SECONDS
                )
                if budget <= 0:
                    raise ResourceExhausted(
                        f"{no_room.message}; waited {waited:.1f} s for room, and the deadline "
                        f"leaves too little for a load of about {no_room.load_seconds:.0f} s"
                    ) from None
                span.add_event("warmpath.waiting_for_room", {"warmpath.reason": no_room.message})
                await self._wait_for_room(no_room.room_version, budget)
        load_seconds = time.monotonic() - started
        span.set_attribute("warmpath.memory.free_after_bytes", await self._total_free())
        return LoadOutcome(
            residency,
            cold_start=True,
            load_seconds=load_seconds,
            evicted=evicted,
            woken=residency.woken,
        )

    def _load_task(
        self, spec: ModelSpec, give_up_at: float
    ) -> asyncio.Task[tuple[Residency, tuple[str, ...]]]:
        """The one load of `spec` in progress, started if there is none (single flight);
        `give_up_at` (monotonic) is its starter's deadline. It is shielded by callers:
        one that gives up must not abort a load others wait on."""
        task = self._loads.get(spec.name)
        if task is None:
            task = asyncio.create_task(self._load(spec, give_up_at), name=f"load {spec.name}")
            self._loads[spec.name] = task
            task.add_done_callback(lambda done: self._load_ended(spec.name, done))
        return task

    def _load_ended(
        self, model: str, task: asyncio.Task[tuple[Residency, tuple[str, ...]]]
    ) -> None:
        self._loads.pop(model, None)
        if not task.cancelled():
            # Retrieved here so that a load whose callers all gave up logs no warning.
            task.exception()

    async def _wait_for_room(self, seen_version: int, budget: float) -> None:
        """Returns when memory may have become available since `seen_version`, or after
        `budget` seconds. Leases and min_residency run out without an event, so the wait
        is also cut at the next moment one of them does."""
        await self._room.wait(seen_version, min(budget, self._next_timed_change()))

    def _next_timed_change(self) -> float:
        now = self._clock()
        due = [
            moment
            for residency in self._residents.values()
            if not residency.pinned and residency.state is ResidencyState.READY
            for moment in (
                self._leases.get(residency.model, 0.0),
                (residency.ready_since or now) + self._min_residency,
            )
            if moment > now
        ]
        # Just past the moment, so that the model is evictable when the plan looks.
        return min(due) - now + 0.001 if due else MAX_ROOM_WAIT_SECONDS

    async def unload(self, model: str, *, force: bool, sleep: bool = False) -> bool:
        """False when `model` was not resident. `sleep`: put it to sleep in host RAM
        where the warm tier can (is_asleep says whether it did), else unload it."""
        self._spec(model)
        current = self._residents.get(model)
        if current is None:
            return False
        if current.state is ResidencyState.ASLEEP and sleep:
            return True
        if current.pinned and not force:
            raise FailedPrecondition(f"{model} is pinned; pass force to unload it anyway")
        leased_for = self._leases.get(model, 0.0) - self._clock()
        if leased_for > 0 and not force:
            raise FailedPrecondition(
                f"{model} has requests in flight (leased for {leased_for:.0f} s more); "
                "pass force to unload it anyway"
            )
        if current.state is ResidencyState.LOADING:
            raise FailedPrecondition(f"{model} is still loading; unload it once it is ready")
        if not (sleep and await self._put_to_sleep(current, "on request", asked=True)):
            await self._stop(current, reason="unloaded on request", kind="request")
        return True

    def is_asleep(self, model: str) -> bool:
        current = self._residents.get(model)
        return current is not None and current.state is ResidencyState.ASLEEP

    async def load_pinned(self) -> None:
        for spec in self._specs.values():
            if spec.pinned:
                try:
                    await self.ensure_loaded(spec.name)
                except (Unavailable, ResourceExhausted) as error:
                    logger.error("could not load pinned model %s: %s", spec.name, error.message)

    async def adopt(self, found: Sequence[tuple[RunningModel, str]]) -> list[str]:
        """Registers model servers that already run (a driver found them at start-up) as
        ready, without loading: `found` pairs each with the UUID of its GPU. Their memory
        is booked; no load is counted. Returns the models adopted.

        Servers for models this host does not serve, on a GPU it does not see, or already
        resident are left alone (and logged): they are not this manager's to judge.
        """
        gpus = {gpu.uuid: gpu for gpu in await self._inventory.read()}
        adopted = []
        for running, gpu_uuid in found:
            spec = self._specs.get(running.model)
            # A gang's server runs on several GPUs: "uuid,uuid", every one must be seen.
            gang = [gpus.get(uuid) for uuid in gpu_uuid.split(",")]
            gpu = gang[0] if all(gang) else None
            if spec is None or gpu is None or running.model in self._residents:
                why = (
                    "is not served by this host" if spec is None
                    else f"is on GPU {gpu_uuid!r}, which this host does not see" if gpu is None
                    else "is already resident"
                )  # fmt: skip
                logger.warning("leaving running %s alone: it %s", running.model, why)
                continue
            measured = await self._measurements.measure(running)
            estimated = self._measurements.whole(spec.name)
            if not estimated:
                try:
                    estimated = await asyncio.to_thread(self._estimate_bytes, spec)
                except ModelLoadFailed as error:
                    logger.warning("adopting %s with no memory estimate: %s", spec.name, error)
            now = self._clock()
            members = tuple(g for g in gang if g is not None)
            ready = Residency(
                model=spec.name,
                state=ResidencyState.READY,
                gpu_index=gpu.index,
                gpu_uuid=gpu.uuid,
                estimated_bytes=estimated,
                pinned=spec.pinned,
                measured_bytes=measured,
                running=running,
                ready_since=now,
                last_used=now,
            )
            if len(members) > 1:
                ready = self._adopted_gang(ready, members, spec)
            if self._warm is not None and await self._warm.found_asleep(spec, running):
                ready = self._adopted_asleep(ready, spec)
            else:
                self._book.book_gang(spec.name, self._shares(ready), loading=False)
            self._residents[spec.name] = ready
            self._watch_for_exit(ready)
            adopted.append(spec.name)
            await self.feed.publish(
                f"{spec.name} adopted on {ready.where}: already running, not reloaded"
                + (" (asleep in host RAM)" if ready.state is ResidencyState.ASLEEP else "")
            )
        return adopted

    def _adopted_gang(
        self, ready: Residency, members: tuple[GpuReading, ...], spec: ModelSpec
    ) -> Residency:
        """An adopted server on several GPUs: its measured share on each where NVML saw
        it, else the footprint shared evenly. Layer shares are not known again."""
        indexes = tuple(g.index for g in members)
        per_gpu = self._measurements.per_gpu(spec.name)
        even = ready.footprint_bytes // len(members)
        return replace(
            ready,
            gpu_indexes=indexes,
            gpu_uuids=tuple(g.uuid for g in members),
            gpu_bytes=tuple(per_gpu.get(i, even) for i in indexes),
            layout=Layout.TENSOR_PARALLEL if spec.tensor_parallel > 1 else Layout.LAYER_SPLIT,
        )

    async def expire_idle(self) -> None:
        """Unloads ready, unpinned models idle for longer than their keep-alive."""
        now = self._clock()
        for residency in list(self._residents.values()):
            spec = self._specs[residency.model]
            idle = now - residency.last_used
            if await self._expire_asleep(residency, idle):
                continue
            if (
                residency.state is ResidencyState.READY
                and not residency.pinned
                and idle > spec.keep_alive_seconds
                and not self._leased(residency.model, now)
            ):
                await self._demote(
                    residency,
                    reason=f"keep-alive expired after {idle:.0f} s idle",
                    kind="keep_alive",
                )

    # -- hung servers (server_watch.py decides, the manager records) ----------

    def probed_servers(self) -> tuple[Residency, ...]:
        """Ready and unresponsive models whose server can be probed."""
        return tuple(
            r
            for r in self._residents.values()
            if r.state in SERVING_STATES and r.running is not None and r.running.probe_url
        )

    async def server_unresponsive(self, model: str, running: RunningModel, reason: str) -> None:
        """Marks a ready model unresponsive, if `running` still serves it."""
        current = self._serving(model, running, ResidencyState.READY)
        if current is None:
            return
        self._residents[model] = replace(
            current, state=ResidencyState.UNRESPONSIVE, failure_reason=reason
        )
        self._metrics.unresponsive.labels(model).inc()
        await self.feed.publish(f"{model} unresponsive: {reason}")

    async def server_answers_again(self, model: str, running: RunningModel, note: str) -> None:
        """Marks an unresponsive model ready again, if `running` still serves it."""
        current = self._serving(model, running, ResidencyState.UNRESPONSIVE)
        if current is None:
            return
        self._residents[model] = replace(current, state=ResidencyState.READY, failure_reason="")
        await self.feed.publish(f"{model} answers again ({note}): ready")

    async def restart_unresponsive(self, model: str, running: RunningModel, reason: str) -> None:
        """Stops an unresponsive model's server and marks it failed: the next request
        loads it again, as after a crash."""
        current = self._serving(model, running, ResidencyState.UNRESPONSIVE)
        if current is None:
            return
        stopping = replace(current, state=ResidencyState.UNLOADING)
        self._residents[model] = stopping
        self._watchers.stop(model)
        try:
            await self._driver.stop(running)
        finally:
            # Failed even if the stop failed: left unloading, it would never load again.
            if self._residents.get(model) is stopping:
                self._book.release(model)
                self._residents[model] = replace(
                    current,
                    state=ResidencyState.FAILED,
                    running=None,
                    failure_reason=f"{reason}; stopped, the next request loads it again",
                )
                self._room.may_have_changed()
        self._metrics.hung_restarts.labels(model).inc()
        self._metrics.unloads.labels(model, "unresponsive").inc()
        await self.feed.publish(
            f"{model} failed: {reason}; its server was stopped, the next request loads it again"
        )

    def _serving(
        self, model: str, running: RunningModel, state: ResidencyState
    ) -> Residency | None:
        current = self._residents.get(model)
        if current is None or current.state is not state or current.running is not running:
            return None
        return current

    async def close(self) -> None:
        self._watchers.close()
        for load in list(self._loads.values()):
            load.cancel()
        await self._driver.close()

    # -- warm tier (warm_tier.py decides, sleepers.py acts, the manager records) --

    async def _demote(self, residency: Residency, *, reason: str, kind: str) -> None:
        """A model leaves its GPUs: asleep in host RAM when the warm tier says so, else
        unloaded."""
        if not await self._put_to_sleep(residency, reason):
            await self._stop(residency, reason=reason, kind=kind)

    def _sleeper(self, residency: Residency, now: float) -> Sleeper | None:
        spec = self._specs[residency.model]
        size = residency.footprint_bytes
        wake = None if self._warm is None else self._warm.wake_seconds(spec, size)
        if wake is None:
            return None
        return Sleeper(
            model=residency.model,
            host_bytes=residency.asleep_bytes or size,
            load_seconds=self._expected_load(residency.model, size),
            wake_seconds=wake,
            demand_per_minute=self._demand.per_minute(residency.model, now),
        )

    def _sleepers(self, now: float) -> list[Sleeper]:
        return [
            sleeper
            for r in self._residents.values()
            if r.state is ResidencyState.ASLEEP and (sleeper := self._sleeper(r, now)) is not None
        ]

    def _could_sleep(self, residency: Residency, now: float) -> Sleeper | None:
        """The model as a sleeper, if its server could sleep were it to leave its GPUs now."""
        sleeper = self._sleeper(residency, now)
        if sleeper is None or residency.running is None or self._warm is None:
            return None
        return sleeper

    def _freed_by_eviction(
        self, residency: Residency, now: float, size: int, host_free: int | None
    ) -> int:
        """What evicting it frees on a GPU: less what its server would keep asleep."""
        sleeper = self._could_sleep(residency, now)
        if sleeper is None or self._warm is None:
            return size
        spec = self._specs[residency.model]
        return self._warm.freed_by_eviction(spec, size, sleeper, self._sleepers(now), host_free)

    def _return_seconds(
        self, residency: Residency, load_seconds: float, now: float, host_free: int | None
    ) -> float:
        """What bringing the model back would cost if it left its GPUs now
        (warm_tier.return_seconds: the eviction cost model, one tier down)."""
        sleeper = self._could_sleep(residency, now)
        if sleeper is None:
            return load_seconds
        return min(load_seconds, return_seconds(sleeper, self._sleepers(now), host_free))

    def _victims_sleep(self, victims: Sequence[ResidentModel], host_free: int | None) -> bool:
        """Every victim would sleep in free host RAM (its return a wake, not a load):
        then waiting for room, rather than evict a hot-set model, buys little."""
        now = self._clock()
        return bool(victims) and all(
            (current := self._residents.get(victim.model)) is not None
            and (sleeper := self._could_sleep(current, now)) is not None
            and sleeps_freely(sleeper, self._sleepers(now), host_free)
            for victim in victims
        )

    async def _put_to_sleep(
        self, residency: Residency, reason: str, *, asked: bool = False
    ) -> bool:
        model = residency.model
        now = self._clock()
        leaving = self._sleeper(residency, now)
        running = residency.running
        if self._warm is None or leaving is None or running is None:
            return False
        host_free = None if self._host_memory is None else await self._host_memory.available_bytes()
        demotion = self._warm.decide(leaving, self._sleepers(now), host_free, asked=asked)
        if not demotion.sleep:
            logger.info("%s is unloaded rather than put to sleep: %s", model, demotion.reason)
            return False
        for name in demotion.unload_sleepers:
            await self._stop(
                self._residents[name],
                reason=f"unloaded from host RAM to make room for {model} asleep",
                kind="host_ram",
            )
        self._residents[model] = replace(residency, state=ResidencyState.UNLOADING)
        try:
            kind, still_running, host_bytes = await self._warm.put_to_sleep(
                self._specs[model], running, self._driver
            )
        except SleepFailed as error:
            logger.warning("%s could not be put to sleep, so it is unloaded: %s", model, error)
            self._residents[model] = residency
            return False
        held = host_bytes or leaving.host_bytes
        left: dict[int, int] = {}
        if still_running is not None:
            awake = self._shares(residency)
            left = await self._warm.held_on_gpus(still_running, awake, self._inventory)
        self._book.release(model)
        self._book.book_host(model, held)
        self._book.book_gang(model, left, loading=False)  # freed when it is unloaded
        self._residents[model] = replace(
            residency,
            state=ResidencyState.ASLEEP,
            running=still_running,
            asleep_bytes=held,
            asleep_gpu_bytes=sum(left.values()),
            sleep_kind=kind,
            woken=False,
        )
        self._metrics.sleeps.labels(model, kind.value).inc()
        self._room.may_have_changed()
        await self.feed.publish(
            f"{model} asleep in host RAM ({held / _MIB:.0f} MiB, "
            + (
                f"its server sleeps, keeping {sum(left.values()) / _MIB:.0f} MiB on its GPUs"
                if still_running is not None
                else "its file in the page cache"
            )
            + f") off {residency.where}: {reason}; {demotion.reason}"
        )
        return True

    async def _unload_sleepers(self, shortfall: int, model: str) -> bool:
        """Host RAM pressure: unloads sleepers freeing `shortfall` bytes, least value per
        byte first; False (and none unloaded) when all of them would not be enough."""
        chosen = sleepers_to_unload(self._sleepers(self._clock()), shortfall)
        if not chosen:
            return False
        for name in chosen:
            await self._stop(
                self._residents[name],
                reason=f"unloaded from host RAM to make room for {model}",
                kind="host_ram",
            )
        return True

    async def _expire_asleep(self, residency: Residency, idle: float) -> bool:
        """Unloads a sleeper idle past its keep-alive and the warm tier's; True when
        `residency` is asleep (expired or not)."""
        if residency.state is not ResidencyState.ASLEEP or self._warm is None:
            return residency.state is ResidencyState.ASLEEP
        limit = (
            self._specs[residency.model].keep_alive_seconds + self._warm.asleep_keep_alive_seconds
        )
        if idle > limit:
            await self._stop(
                residency, reason=f"asleep and unused for {idle:.0f} s", kind="keep_alive"
            )
        return True

    async def _wake_if_asleep(
        self, spec: ModelSpec, give_up_at: float
    ) -> tuple[tuple[Residency, tuple[str, ...]] | None, Residency | None]:
        """Before a load: a sleeping server is woken where it sleeps (the load's result,
        None when it could not be); a page-cache sleeper is returned, for the load that
        follows to count as its wake."""
        asleep = self._residents.get(spec.name)
        if asleep is None or asleep.state is not ResidencyState.ASLEEP:
            return None, None
        if asleep.running is None or self._warm is None:
            return None, asleep
        return await self._wake(spec, asleep, asleep.running, self._warm, give_up_at), None

    def _timed(self, loading: Residency, seconds: float, *, woken: bool) -> Residency:
        """Records how long a load took: a reload from the page cache times the wake,
        not a load from disk."""
        if woken and self._warm is not None:
            return self._woken(loading, self._warm.record_wake(loading.model, seconds))
        self._timed_loads[loading.model] = seconds
        self._metrics.loads.labels(loading.model, "ok").inc()
        self._metrics.load_seconds.labels(loading.model).observe(seconds)
        return loading

    def _adopted_asleep(self, residency: Residency, spec: ModelSpec) -> Residency:
        """A server adopted asleep: its weights hold host RAM, not GPU memory. What NVML
        saw of it asleep says nothing of what it needs awake."""
        self._measurements.forget(spec.name)
        size = int(spec.memory) if spec.memory else residency.estimated_bytes
        self._book.book_host(spec.name, size)
        return replace(
            residency,
            state=ResidencyState.ASLEEP,
            estimated_bytes=size,
            measured_bytes=0,
            asleep_bytes=size,
            sleep_kind=SleepKind.SERVER,
        )

    def _woken(self, residency: Residency, wake_seconds: float) -> Residency:
        self._metrics.wakes.labels(residency.model, "ok").inc()
        self._metrics.wake_seconds.labels(residency.model).observe(wake_seconds)
        return replace(residency, woken=True, wake_seconds=wake_seconds)

    async def _wake(
        self,
        spec: ModelSpec,
        asleep: Residency,
        running: RunningModel,
        warm: WarmTier,
        give_up_at: float,
    ) -> tuple[Residency, tuple[str, ...]] | None:
        """Wakes a sleeping server where it sleeps, making room there as for a load.
        None when it cannot (no room on its GPUs, or the wake failed): it is unloaded
        and the caller loads the model from disk instead."""
        async with self._placement:
            try:
                # What it still holds asleep is counted used: the wake needs the rest.
                shape = await self._shape(spec, asleep.footprint_bytes - asleep.asleep_gpu_bytes)
                _, _, evicted = await self._place(spec.name, shape, give_up_at, asleep.on_gpus)
            except ResourceExhausted as error:
                if isinstance(error, NoRoomYet):
                    raise
                await self._stop(
                    asleep, reason=f"no room to wake it on {asleep.where}", kind="host_ram"
                )
                return None
            waking = replace(
                asleep,
                state=ResidencyState.LOADING,
                asleep_bytes=0,
                asleep_gpu_bytes=0,
                sleep_kind=None,
            )
            self._residents[spec.name] = waking
            self._book.release(spec.name)
            self._book.book_gang(spec.name, self._shares(waking), loading=True)
        try:
            seconds = await warm.wake_server(spec, running)
        except SleepFailed as error:
            self._metrics.wakes.labels(spec.name, "failed").inc()
            await self._stop(waking, reason=f"its wake failed ({error})", kind="crashed")
            return None
        now = self._clock()
        ready = self._woken(
            replace(waking, state=ResidencyState.READY, ready_since=now, last_used=now), seconds
        )
        self._residents[spec.name] = ready
        self._book.book_gang(spec.name, self._shares(ready), loading=False)
        self._room.may_have_changed()
        await self.feed.publish(f"{spec.name} woken from sleep on {ready.where} in {seconds:.1f} s")
        return ready, evicted

    # -- internals -------------------------------------------------------

    async def _total_free(self) -> int:
        return sum(gpu.memory_free_bytes for gpu in await self._inventory.read() if gpu.healthy)

    def _spec(self, model: str) -> ModelSpec:
        spec = self._specs.get(model)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise ModelNotFound(f"host {self.host} does not serve {model!r}; it serves: {known}")
        return spec

    def _load_failure(self, model: str, error: ModelLoadFailed) -> Unavailable:
        """What the caller hears: the model, this host and why, but no path on this host
        (the agent's log and state keep the full message)."""
        logger.error("could not load %s: %s", model, error)
        return Unavailable(f"could not load {model} on {self.host}: {error.for_caller}")

    async def _load(self, spec: ModelSpec, give_up_at: float) -> tuple[Residency, tuple[str, ...]]:
        woken, asleep = await self._wake_if_asleep(spec, give_up_at)
        if woken is not None:
            return woken
        need = self._measurements.whole(spec.name) or self._estimated.get(spec.name)
        if not need:
            try:
                need = await asyncio.to_thread(self._estimate_bytes, spec)
            except ModelLoadFailed as error:
                self._metrics.loads.labels(spec.name, "failed").inc()
                raise self._load_failure(spec.name, error) from error
            # Kept: a model waiting for room asks again at every chance of some.
            self._estimated[spec.name] = need
        shape = await self._shape(spec, need)
        async with self._placement:
            plan, gang, evicted = await self._place(spec.name, shape, give_up_at)
            loading = Residency(
                model=spec.name,
                state=ResidencyState.LOADING,
                gpu_index=gang[0].index,
                gpu_uuid=gang[0].uuid,
                estimated_bytes=need if len(gang) == 1 else sum(plan.gpu_bytes),
                pinned=spec.pinned,
                last_used=self._clock(),
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
                self._book.release(spec.name)
            self._residents[spec.name] = loading
            self._book.book_gang(
                spec.name, dict(zip(plan.gpu_indexes, plan.gpu_bytes, strict=True)), loading=True
            )
            self._book.book_host(spec.name, plan.host_bytes)
        await self.feed.publish(
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
            running = await self._driver.start(spec, gang[0], placement)
        except ModelLoadFailed as error:
            self._metrics.loads.labels(spec.name, "failed").inc()
            self._book.release(spec.name)
            self._residents[spec.name] = replace(
                loading, state=ResidencyState.FAILED, failure_reason=str(error)
            )
            self._room.may_have_changed()
            await self.feed.publish(f"{spec.name} failed to load: {error}")
            raise self._load_failure(spec.name, error) from error
        except BaseException:
            self._book.release(spec.name)
            self._residents.pop(spec.name, None)
            self._room.may_have_changed()
            raise
        load_seconds = time.monotonic() - started
        loading = self._timed(loading, load_seconds, woken=asleep is not None)
        measured = await self._measurements.measure(
            running, whole=plan.layout is not Layout.OFFLOAD and not running.host_bytes
        )
        ready = replace(
            loading,
            state=ResidencyState.READY,
            running=running,
            measured_bytes=measured,
            gpu_bytes=self._measurements.shares(running.model, loading, measured),
            # A wake keeps the last load from disk as the model's load time.
            load_seconds=self._timed_loads.get(spec.name, load_seconds),
            ready_since=self._clock(),
            last_used=self._clock(),
        )
        if running.host_bytes:
            ready = offloaded_by_server(ready, running.host_bytes, plan.shares)
            self._book.book_host(spec.name, running.host_bytes)
        self._residents[spec.name] = ready
        self._book.book_gang(spec.name, self._shares(ready), loading=False)
        # Its booking may have shrunk to the measured size, and it starts to age.
        self._room.may_have_changed()
        self._watch_for_exit(ready)
        await self.feed.publish(
            f"{spec.name} ready ({ready.description}) after {load_seconds:.1f} s"
            + (" (woken from the page cache)" if ready.woken else "")
            + (f" (measured {measured / _MIB:.0f} MiB)" if measured else "")
        )
        return ready, evicted

    def _shares(self, residency: Residency) -> dict[int, int]:
        return {i: residency.bytes_on(i) for i in residency.on_gpus}

    async def _shape(self, spec: ModelSpec, need: int) -> ModelShape:
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

    async def _place(
        self, model: str, shape: ModelShape, give_up_at: float, only: tuple[int, ...] = ()
    ) -> tuple[GangPlan, tuple[GpuReading, ...], tuple[str, ...]]:
        """`only`: the GPUs it may go on (a sleeping server wakes where it sleeps)."""
        # Taken before the reading: a change after it sends a waiter straight back.
        room_version = self._room.version
        readings = {
            gpu.index: gpu
            for gpu in await self._inventory.read()
            if gpu.healthy and (not only or gpu.index in only)
        }
        if not readings:
            raise Unavailable(f"host {self.host} has no healthy GPU to load {model} on")
        now = self._clock()
        host_free = None if self._host_memory is None else await self._host_memory.available_bytes()
        rooms = [
            GpuRoom(
                index=gpu.index,
                # A live reading cannot see loads still in progress; a simulated
                # one is computed from the book and already includes them.
                free_bytes=gpu.memory_free_bytes
                - (0 if gpu.simulated else self._book.loading_bytes(gpu.index)),
                # Loading and unloading models are never victims, but their memory
                # is on its way to being evictable or free: it counts for waiting.
                # A gang is listed on each of its GPUs, with its share there.
                residents=tuple(
                    self._as_resident(r, now, r.bytes_on(gpu.index), host_free)
                    for r in self._residents.values()
                    if gpu.index in r.on_gpus and r.state not in OFF_GPU_STATES
                ),
            )
            for gpu in readings.values()
        ]
        protected = protected_models(rooms, self._candidates(now), incumbents=self._hot_set)
        self._hot_set = protected
        need = shape.total_bytes
        plan = plan_gang(
            rooms,
            shape,
            now,
            self._min_residency,
            model=model,
            protected=protected,
            host_free_bytes=host_free,
        )
        if isinstance(plan, HostRamShort):
            if await self._unload_sleepers(plan.need_bytes - plan.free_bytes, model):
                return await self._place(model, shape, give_up_at, only)
            raise host_ram_short(model, plan)
        if isinstance(plan, NoRoom):
            raise no_room(
                model,
                plan,
                shape,
                healthy_gpus=len(readings),
                min_residency_seconds=self._min_residency,
                room_version=room_version,
                load_seconds=self._expected_load(model, shape.total_bytes),
            )
        patience = (
            give_up_at
            - time.monotonic()
            - self._expected_load(model, need)
            - _ANSWER_MARGIN_SECONDS
        )
        if 0 < plan.cheaper_in_seconds <= patience:
            raise NoRoomYet(
                f"{model} waits {plan.cheaper_in_seconds:.1f} s for a model loaded less than "
                f"{self._min_residency:g} s ago to become evictable, rather than evict "
                + ", ".join(v.model for v in plan.victims),
                room_version,
                self._expected_load(model, need),
            )
        if (
            plan.waits_for_unprotected
            and patience > 0
            and not self._victims_sleep(plan.victims, host_free)
        ):
            raise NoRoomYet(
                f"{model} waits for memory held by other models outside the hot set "
                f"({', '.join(sorted(protected)) or 'none'}) to come free, rather than evict "
                + ", ".join(v.model for v in plan.victims if v.model in protected),
                room_version,
                self._expected_load(model, need),
            )
        for victim in plan.victims:
            await self._demote(
                self._residents[victim.model],
                reason=f"evicted to make room for {model} "
                f"(reload cost {victim.reload_cost:.1f} load-s/min)",
                kind="evicted",
            )
        gang = tuple(readings[index] for index in plan.gpu_indexes)
        return plan, gang, tuple(v.model for v in plan.victims)

    def _candidates(self, now: float) -> list[Candidate]:
        """Every model asked for recently whose size is known (the hot set's candidates)."""
        candidates = []
        for model in self._specs:
            demand = self._demand.hot_set_per_minute(model, now)
            resident = self._residents.get(model)
            size = (
                resident.footprint_bytes
                if resident is not None
                else self._measurements.whole(model) or self._estimated.get(model)
            )
            if demand > 0 and size:
                candidates.append(Candidate(model, size, self._expected_load(model, size), demand))
        return candidates

    def _expected_load(self, model: str, need: int) -> float:
        return self._timed_loads.get(model) or estimated_load_seconds(need)

    def _as_resident(
        self, residency: Residency, now: float, size: int, host_free: int | None
    ) -> ResidentModel:
        return ResidentModel(
            model=residency.model,
            size_bytes=self._freed_by_eviction(residency, now, size, host_free),
            # An adopted model was never timed here; it is not free to reload.
            load_seconds=self._return_seconds(
                residency,
                residency.load_seconds or estimated_load_seconds(residency.footprint_bytes),
                now,
                host_free,
            ),
            demand_per_minute=self._demand.per_minute(residency.model, now),
            last_used=residency.last_used,
            resident_since=residency.ready_since or now,
            pinned=residency.pinned,
            in_use=residency.state is not ResidencyState.READY
            or self._leased(residency.model, now),
            host_bytes=residency.host_bytes,
        )

    def _leased(self, model: str, now: float) -> bool:
        return self._leases.get(model, 0.0) > now

    async def _stop(self, residency: Residency, *, reason: str, kind: str) -> None:
        self._residents[residency.model] = replace(residency, state=ResidencyState.UNLOADING)
        if residency.state is ResidencyState.ASLEEP and self._warm is not None:
            await self._warm.let_go(self._specs[residency.model], residency.running, self._driver)
        elif residency.running is not None:
            await self._driver.stop(residency.running)
        self._book.release(residency.model)
        self._residents.pop(residency.model, None)
        self._room.may_have_changed()
        await self.feed.publish(f"{residency.model} unloaded from {residency.where}: {reason}")

    async def _verify(self, model: str, span: trace.Span) -> None:
        """Asks the driver whether a ready model's server is still up, rather than wait
        for its watcher's next poll, and marks one found down failed."""
        current = self._residents.get(model)
        if current is None or current.state not in SERVING_STATES:
            return
        running = current.running
        if running is None:
            return
        reason = await self._driver.check(running)
        span.set_attribute("warmpath.server_found_down", reason is not None)
        if reason is not None:
            await self._server_down(model, running, reason, stop_watching=True)

    async def _server_down(
        self, model: str, running: RunningModel, reason: str, *, stop_watching: bool = False
    ) -> None:
        """Marks `model` failed if `running` still serves it (its watcher and a caller's
        check may both find the same death; only the first counts). `stop_watching`:
        found by a check, so its watcher, still waiting, is cancelled."""
        current = self._residents.get(model)
        if current is None or current.state not in SERVING_STATES:
            return
        if current.running is not running:
            return
        if stop_watching:
            self._watchers.stop(model)
        self._book.release(model)
        self._residents[model] = replace(
            current, state=ResidencyState.FAILED, running=None, failure_reason=reason
        )
        self._metrics.unloads.labels(model, "crashed").inc()
        self._room.may_have_changed()
        await self.feed.publish(f"{model} failed: {reason}")

    def _watch_for_exit(self, ready: Residency) -> None:
        running = ready.running
        if running is None:
            return
        model = ready.model

        async def watch() -> None:
            await self._server_down(model, running, await self._driver.wait_exited(running))

        self._watchers.watch(model, watch())
