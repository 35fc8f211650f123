"""Which models are resident on this host's GPUs, and the rules for changing that.

The ResidencyManager is the only writer of residency. Its invariants:

* one load per model at a time: concurrent `ensure_loaded` calls share it
  (single flight), and a caller that gives up does not abort the load;
* a load never blocks requests for other models: only placement (choosing a
  GPU and booking memory) is serialised, the slow start is not;
* free memory comes from the live GPU reading; memory booked for loads still
  in progress is subtracted because the reading cannot see it yet;
* placement and eviction follow eviction.py: never a pinned model or one
  resident for less than min_residency; otherwise the lowest expected reload
  cost (load time x recent demand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from opentelemetry import trace

from warmpath_agent.drivers import ModelDriver, ModelLoadFailed, RunningModel
from warmpath_agent.eviction import DemandTracker, GpuRoom, NoRoom, ResidentModel, plan_placement
from warmpath_agent.inventory import GpuInventory, GpuReading, MemoryBook
from warmpath_agent.metrics import AgentMetrics
from warmpath_common.config import ModelSpec
from warmpath_common.errors import (
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    ResourceExhausted,
    Unavailable,
)

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

_MIB = 1024 * 1024
# A lease longer than this would let a dead router pin a model for too long.
MAX_LEASE_SECONDS = 300.0


class ResidencyState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Residency:
    """One model's residency on this host, as of one moment."""

    model: str
    state: ResidencyState
    gpu_index: int
    gpu_uuid: str
    estimated_bytes: int
    pinned: bool
    measured_bytes: int = 0
    running: RunningModel | None = None
    load_seconds: float = 0.0
    ready_since: float | None = None
    last_used: float = 0.0
    failure_reason: str = ""

    @property
    def footprint_bytes(self) -> int:
        return self.measured_bytes or self.estimated_bytes


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    residency: Residency
    cold_start: bool
    waited_seconds: float
    evicted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HostState:
    host: str
    simulated: bool
    gpus: tuple[GpuReading, ...]
    models: tuple[Residency, ...]
    servable_models: tuple[str, ...]
    observed_at: float


class ChangeFeed:
    """Numbered descriptions of state changes, for WatchState subscribers."""

    def __init__(self, keep: int = 256) -> None:
        self._version = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=keep)
        self._changed = asyncio.Condition()

    @property
    def version(self) -> int:
        return self._version

    async def publish(self, description: str) -> None:
        async with self._changed:
            self._version += 1
            self._recent.append((self._version, description))
            self._changed.notify_all()
        logger.info("%s", description)

    async def wait_after(self, version: int, timeout: float) -> tuple[int, list[str]]:
        """Descriptions newer than `version`; empty after `timeout` with no change."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._version > version), timeout
                )
            return self._version, [text for number, text in self._recent if number > version]


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
    ) -> None:
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
        self._watchers: set[asyncio.Task[None]] = set()
        self._measured: dict[str, int] = {}

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

    # -- commands --------------------------------------------------------

    async def ensure_loaded(
        self, model: str, warm_requests: int = 0, lease_seconds: float = 0.0
    ) -> LoadOutcome:
        """Makes `model` resident. `warm_requests`: requests the caller served from it
        without asking (they count towards its demand, hence its eviction cost).
        `lease_seconds`: the caller has requests in flight on it for that long."""
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
            outcome = await self._ensure_loaded(model, span)
            residency = outcome.residency
            span.set_attributes(
                {
                    "warmpath.cold_start": outcome.cold_start,
                    "warmpath.load_seconds": outcome.waited_seconds,
                    "warmpath.evicted": list(outcome.evicted),
                    "warmpath.gpu.index": residency.gpu_index,
                    "warmpath.gpu.uuid": residency.gpu_uuid,
                    "warmpath.memory.estimated_bytes": residency.estimated_bytes,
                    "warmpath.memory.measured_bytes": residency.measured_bytes,
                }
            )
            return outcome

    async def _ensure_loaded(self, model: str, span: trace.Span) -> LoadOutcome:
        spec = self._spec(model)
        current = self._residents.get(model)
        if current is not None and current.state is ResidencyState.READY:
            touched = replace(current, last_used=self._clock())
            self._residents[model] = touched
            return LoadOutcome(touched, cold_start=False, waited_seconds=0.0, evicted=())
        span.set_attribute("warmpath.memory.free_before_bytes", await self._total_free())
        started = time.monotonic()
        task = self._loads.get(model)
        if task is None:
            task = asyncio.create_task(self._load(spec), name=f"load {model}")
            self._loads[model] = task
            task.add_done_callback(lambda _: self._loads.pop(model, None))
        # Shielded: a caller that gives up must not abort a load others wait on.
        residency, evicted = await asyncio.shield(task)
        span.set_attribute("warmpath.memory.free_after_bytes", await self._total_free())
        return LoadOutcome(
            residency, cold_start=True, waited_seconds=time.monotonic() - started, evicted=evicted
        )

    async def unload(self, model: str, *, force: bool) -> bool:
        self._spec(model)
        current = self._residents.get(model)
        if current is None:
            return False
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
        await self._stop(current, reason="unloaded on request", kind="request")
        return True

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
            gpu = gpus.get(gpu_uuid)
            if spec is None or gpu is None or running.model in self._residents:
                why = (
                    "is not served by this host" if spec is None
                    else f"is on GPU {gpu_uuid!r}, which this host does not see" if gpu is None
                    else "is already resident"
                )  # fmt: skip
                logger.warning("leaving running %s alone: it %s", running.model, why)
                continue
            measured = await self._measure(running)
            estimated = self._measured.get(spec.name, 0)
            if not estimated:
                try:
                    estimated = await asyncio.to_thread(self._estimate_bytes, spec)
                except ModelLoadFailed as error:
                    logger.warning("adopting %s with no memory estimate: %s", spec.name, error)
            now = self._clock()
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
            self._residents[spec.name] = ready
            self._book.book(spec.name, gpu.index, ready.footprint_bytes, loading=False)
            self._watch_for_exit(ready)
            adopted.append(spec.name)
            await self.feed.publish(
                f"{spec.name} adopted on GPU {gpu.index}: already running, not reloaded"
            )
        return adopted

    async def expire_idle(self) -> None:
        """Unloads ready, unpinned models idle for longer than their keep-alive."""
        now = self._clock()
        for residency in list(self._residents.values()):
            spec = self._specs[residency.model]
            idle = now - residency.last_used
            if (
                residency.state is ResidencyState.READY
                and not residency.pinned
                and idle > spec.keep_alive_seconds
                and not self._leased(residency.model, now)
            ):
                await self._stop(
                    residency,
                    reason=f"keep-alive expired after {idle:.0f} s idle",
                    kind="keep_alive",
                )

    async def close(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        for load in list(self._loads.values()):
            load.cancel()
        await self._driver.close()

    # -- internals -------------------------------------------------------

    async def _total_free(self) -> int:
        return sum(gpu.memory_free_bytes for gpu in await self._inventory.read() if gpu.healthy)

    def _spec(self, model: str) -> ModelSpec:
        spec = self._specs.get(model)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise ModelNotFound(f"host {self.host} does not serve {model!r}; it serves: {known}")
        return spec

    async def _load(self, spec: ModelSpec) -> tuple[Residency, tuple[str, ...]]:
        need = self._measured.get(spec.name)
        if not need:
            try:
                need = await asyncio.to_thread(self._estimate_bytes, spec)
            except ModelLoadFailed as error:
                self._metrics.loads.labels(spec.name, "failed").inc()
                raise Unavailable(f"could not load {spec.name}: {error}") from error
        async with self._placement:
            gpu, evicted = await self._place(spec.name, need)
            loading = Residency(
                model=spec.name,
                state=ResidencyState.LOADING,
                gpu_index=gpu.index,
                gpu_uuid=gpu.uuid,
                estimated_bytes=need,
                pinned=spec.pinned,
                last_used=self._clock(),
            )
            self._residents[spec.name] = loading
            self._book.book(spec.name, gpu.index, need, loading=True)
        await self.feed.publish(
            f"{spec.name} loading on GPU {gpu.index} ({need / _MIB:.0f} MiB estimated)"
        )
        started = time.monotonic()
        try:
            running = await self._driver.start(spec, gpu)
        except ModelLoadFailed as error:
            self._metrics.loads.labels(spec.name, "failed").inc()
            self._book.release(spec.name)
            self._residents[spec.name] = replace(
                loading, state=ResidencyState.FAILED, failure_reason=str(error)
            )
            await self.feed.publish(f"{spec.name} failed to load: {error}")
            raise Unavailable(f"could not load {spec.name}: {error}") from error
        except BaseException:
            self._book.release(spec.name)
            self._residents.pop(spec.name, None)
            raise
        load_seconds = time.monotonic() - started
        self._metrics.loads.labels(spec.name, "ok").inc()
        self._metrics.load_seconds.labels(spec.name).observe(load_seconds)
        measured = await self._measure(running)
        ready = replace(
            loading,
            state=ResidencyState.READY,
            running=running,
            measured_bytes=measured,
            load_seconds=load_seconds,
            ready_since=self._clock(),
            last_used=self._clock(),
        )
        self._residents[spec.name] = ready
        self._book.book(spec.name, gpu.index, ready.footprint_bytes, loading=False)
        self._watch_for_exit(ready)
        await self.feed.publish(
            f"{spec.name} ready on GPU {gpu.index} after {load_seconds:.1f} s"
            + (f" (measured {measured / _MIB:.0f} MiB)" if measured else "")
        )
        return ready, evicted

    async def _measure(self, running: RunningModel) -> int:
        """Memory the model really holds; remembered for its next placement."""
        if self._inventory.simulated:
            return 0
        if running.memory_bytes:
            measured = running.memory_bytes
        elif running.pid is not None:
            measured = sum((await self._inventory.process_memory(running.pid)).values())
        else:
            return 0
        if measured:
            self._measured[running.model] = measured
        return measured

    async def _place(self, model: str, need: int) -> tuple[GpuReading, tuple[str, ...]]:
        readings = {gpu.index: gpu for gpu in await self._inventory.read() if gpu.healthy}
        if not readings:
            raise Unavailable(f"host {self.host} has no healthy GPU to load {model} on")
        now = self._clock()
        rooms = [
            GpuRoom(
                index=gpu.index,
                # A live reading cannot see loads still in progress; a simulated
                # one is computed from the book and already includes them.
                free_bytes=gpu.memory_free_bytes
                - (0 if gpu.simulated else self._book.loading_bytes(gpu.index)),
                residents=tuple(
                    self._as_resident(r, now)
                    for r in self._residents.values()
                    if r.gpu_index == gpu.index and r.state is ResidencyState.READY
                ),
            )
            for gpu in readings.values()
        ]
        plan = plan_placement(rooms, need, now, self._min_residency)
        if isinstance(plan, NoRoom):
            raise ResourceExhausted(
                f"{model} needs {need / _MIB:.0f} MiB; the roomiest GPU ({plan.gpu_index}) has "
                f"{plan.free_bytes / _MIB:.0f} MiB free and {plan.freeable_bytes / _MIB:.0f} MiB "
                f"freeable (models idle, unpinned and resident for at least "
                f"{self._min_residency:g} s can be evicted)"
            )
        for victim in plan.victims:
            await self._stop(
                self._residents[victim.model],
                reason=f"evicted to make room for {model} "
                f"(reload cost {victim.reload_cost:.1f} load-s/min)",
                kind="evicted",
            )
        return readings[plan.gpu_index], tuple(v.model for v in plan.victims)

    def _as_resident(self, residency: Residency, now: float) -> ResidentModel:
        return ResidentModel(
            model=residency.model,
            size_bytes=residency.footprint_bytes,
            load_seconds=residency.load_seconds,
            demand_per_minute=self._demand.per_minute(residency.model, now),
            last_used=residency.last_used,
            resident_since=residency.ready_since or now,
            pinned=residency.pinned,
            in_use=self._leased(residency.model, now),
        )

    def _leased(self, model: str, now: float) -> bool:
        return self._leases.get(model, 0.0) > now

    async def _stop(self, residency: Residency, *, reason: str, kind: str) -> None:
        self._residents[residency.model] = replace(residency, state=ResidencyState.UNLOADING)
        if residency.running is not None:
            await self._driver.stop(residency.running)
        self._book.release(residency.model)
        self._residents.pop(residency.model, None)
        await self.feed.publish(
            f"{residency.model} unloaded from GPU {residency.gpu_index}: {reason}"
        )

    def _watch_for_exit(self, ready: Residency) -> None:
        running = ready.running
        if running is None:
            return

        async def watch() -> None:
            reason = await self._driver.wait_exited(running)
            current = self._residents.get(ready.model)
            if current is not None and current.state is ResidencyState.READY:
                self._book.release(ready.model)
                self._residents[ready.model] = replace(
                    current, state=ResidencyState.FAILED, running=None, failure_reason=reason
                )
                self._metrics.unloads.labels(ready.model, "crashed").inc()
                await self.feed.publish(f"{ready.model} failed: {reason}")

        task = asyncio.create_task(watch(), name=f"watch {ready.model}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
