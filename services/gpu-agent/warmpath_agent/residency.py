"""Which models are resident on this host's GPUs, and the rules for changing that.

The ResidencyManager is residency's one public face: the servicer, the server watch
and the composition root call it. It takes requests, leases and waits for room
itself, and hands each other job to its module, all sharing one ResidencyCore
(residency_core.py): placement_planner.py places, loading.py loads and wakes,
warm_hooks.py puts to sleep, server_exits.py stops servers and marks crashed ones
failed, server_health.py records hung ones, adoption.py adopts running servers at
start-up. Only these write residency. The invariants they keep together:

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

from warmpath_agent import adoption
from warmpath_agent.drivers import ModelDriver, RunningModel
from warmpath_agent.inventory import GpuInventory, GpuReading, HostMemory, MemoryBook
from warmpath_agent.layouts import ModelShape
from warmpath_agent.loading import Loader
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.placement_planner import PlacementPlanner
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import (
    HostState,
    LoadOutcome,
    Residency,
    ResidencyState,
)
from warmpath_agent.room import ANSWER_MARGIN_SECONDS, NoRoomYet
from warmpath_agent.server_exits import ServerExits
from warmpath_agent.server_health import ServerHealth
from warmpath_agent.sleepers import WarmTier
from warmpath_agent.warm_hooks import WarmHooks
from warmpath_common.config import ModelSpec
from warmpath_common.errors import (
    FailedPrecondition,
    InvalidRequest,
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

# A lease longer than this would let a dead router pin a model for too long.
MAX_LEASE_SECONDS = 300.0
# A caller with no deadline waits for room no longer than a lease can last.
MAX_ROOM_WAIT_SECONDS = MAX_LEASE_SECONDS


class ResidencyManager:
    """The one writer of this host's residency, as the servicer, the server watch and
    the composition root see it; each job is delegated (the module docstring)."""

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
        core = ResidencyCore(
            host=host,
            specs=dict(specs),
            inventory=inventory,
            driver=driver,
            book=book,
            metrics=metrics,
            clock=clock,
            estimate_bytes=estimate_bytes,
            min_residency_seconds=min_residency_seconds,
            host_memory=host_memory,
            warm=warm_tier,
        )
        self._core = core
        self.host = host
        self.feed = core.feed
        self._health = ServerHealth(core)
        self._exits = ServerExits(core)
        self._warm_hooks = WarmHooks(core, self._exits)
        self._planner = PlacementPlanner(core, self._warm_hooks, estimate_shape)
        self._loader = Loader(core, self._planner, self._warm_hooks, self._exits)
        self._gpu_healthy: dict[int, bool] = {}

    # -- queries ---------------------------------------------------------

    async def state(self) -> HostState:
        gpus = tuple(await self._core.inventory.read())
        return HostState(
            host=self.host,
            simulated=self._core.inventory.simulated,
            gpus=gpus,
            models=tuple(sorted(self._core.residents.values(), key=lambda r: r.model)),
            servable_models=tuple(sorted(self._core.specs)),
            observed_at=self._core.clock(),
        )

    async def watch_gpus(self) -> tuple[GpuReading, ...]:
        """Reads the GPUs and puts on the feed each GPU that turned unhealthy or
        healthy again since the last call (and any unhealthy at the first)."""
        gpus = tuple(await self._core.inventory.read())
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
            core = self._core
            core.spec(model)
            now = core.clock()
            core.demand.record(model, now, max(1, warm_requests))
            if lease_seconds > 0:
                core.leases[model] = max(core.leases.get(model, 0.0), now + lease_seconds)
            if verify:
                await self._exits.verify(model, span)
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
        spec = self._core.spec(model)
        current = self._core.residents.get(model)
        if current is not None and current.state is ResidencyState.READY:
            touched = replace(current, last_used=self._core.clock())
            self._core.residents[model] = touched
            return LoadOutcome(touched, cold_start=False, load_seconds=0.0, evicted=())
        if current is not None and current.state is ResidencyState.UNRESPONSIVE:
            # Loading it again beside the hung server would book its memory twice.
            raise Unavailable(
                f"{model}'s server on {self.host} is unresponsive ({current.failure_reason})"
            )
        span.set_attribute("warmpath.memory.free_before_bytes", await self._core.total_free_bytes())
        started = time.monotonic()
        give_up_at = started + (
            MAX_ROOM_WAIT_SECONDS if deadline_seconds is None else max(0.0, deadline_seconds)
        )
        evicted: tuple[str, ...]
        while True:
            current = self._core.residents.get(model)
            if current is not None and current.state is ResidencyState.READY:
                # Loaded by another caller's attempt while this one waited for room.
                residency, evicted = current, ()
                break
            try:
                residency, evicted = await asyncio.shield(self._loader.load_task(spec, give_up_at))
                break
            except NoRoomYet as no_room:
                waited = time.monotonic() - started
                budget = (
                    give_up_at - time.monotonic() - no_room.load_seconds - ANSWER_MARGIN_SECONDS
                )
                if budget <= 0:
                    raise ResourceExhausted(
                        f"{no_room.message}; waited {waited:.1f} s for room, and the deadline "
                        f"leaves too little for a load of about {no_room.load_seconds:.0f} s"
                    ) from None
                span.add_event("warmpath.waiting_for_room", {"warmpath.reason": no_room.message})
                await self._wait_for_room(no_room.room_version, budget)
        load_seconds = time.monotonic() - started
        span.set_attribute("warmpath.memory.free_after_bytes", await self._core.total_free_bytes())
        return LoadOutcome(
            residency,
            cold_start=True,
            load_seconds=load_seconds,
            evicted=evicted,
            woken=residency.woken,
        )

    async def _wait_for_room(self, seen_version: int, budget: float) -> None:
        """Returns when memory may have become available since `seen_version`, or after
        `budget` seconds. Leases and min_residency run out without an event, so the wait
        is also cut at the next moment one of them does."""
        await self._core.room.wait(
            seen_version, min(budget, self._core.next_timed_change(MAX_ROOM_WAIT_SECONDS))
        )

    async def unload(self, model: str, *, force: bool, sleep: bool = False) -> bool:
        """False when `model` was not resident. `sleep`: put it to sleep in host RAM
        where the warm tier can (is_asleep says whether it did), else unload it."""
        self._core.spec(model)
        current = self._core.residents.get(model)
        if current is None:
            return False
        if current.state is ResidencyState.ASLEEP and sleep:
            return True
        if current.pinned and not force:
            raise FailedPrecondition(f"{model} is pinned; pass force to unload it anyway")
        leased_for = self._core.leases.get(model, 0.0) - self._core.clock()
        if leased_for > 0 and not force:
            raise FailedPrecondition(
                f"{model} has requests in flight (leased for {leased_for:.0f} s more); "
                "pass force to unload it anyway"
            )
        if current.state is ResidencyState.LOADING:
            raise FailedPrecondition(f"{model} is still loading; unload it once it is ready")
        if not (sleep and await self._warm_hooks.put_to_sleep(current, "on request")):
            await self._exits.stop(current, reason="unloaded on request", kind="request")
        return True

    def is_asleep(self, model: str) -> bool:
        return self._warm_hooks.is_asleep(model)

    async def load_pinned(self) -> None:
        for spec in self._core.specs.values():
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
        return await adoption.adopt(self._core, self._exits, self._warm_hooks, found)

    async def expire_idle(self) -> None:
        """Unloads ready, unpinned models idle for longer than their keep-alive."""
        now = self._core.clock()
        for residency in list(self._core.residents.values()):
            spec = self._core.specs[residency.model]
            idle = now - residency.last_used
            if await self._warm_hooks.expire_asleep(residency, idle):
                continue
            if (
                residency.state is ResidencyState.READY
                and not residency.pinned
                and idle > spec.keep_alive_seconds
                and not self._core.leased(residency.model, now)
            ):
                await self._warm_hooks.demote(
                    residency,
                    reason=f"keep-alive expired after {idle:.0f} s idle",
                    kind="keep_alive",
                )

    # -- hung servers (server_watch.py decides, the manager records) ----------

    def probed_servers(self) -> tuple[Residency, ...]:
        """Ready and unresponsive models whose server can be probed."""
        return self._health.probed_servers()

    async def server_unresponsive(self, model: str, running: RunningModel, reason: str) -> None:
        """Marks a ready model unresponsive, if `running` still serves it."""
        await self._health.unresponsive(model, running, reason)

    async def server_answers_again(self, model: str, running: RunningModel, note: str) -> None:
        """Marks an unresponsive model ready again, if `running` still serves it."""
        await self._health.answers_again(model, running, note)

    async def restart_unresponsive(self, model: str, running: RunningModel, reason: str) -> None:
        """Stops an unresponsive model's server and marks it failed: the next request
        loads it again, as after a crash."""
        await self._health.restart(model, running, reason)

    async def close(self) -> None:
        self._core.watchers.close()
        self._loader.close()
        await self._core.driver.close()
