"""The warm tier at work: puts models to sleep, wakes them and unloads sleepers, through
the ports of warm_tier.py, and remembers how long each wake took. warm_tier.py decides;
the residency manager records the states."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from warmpath_agent.drivers import ModelDriver, RunningModel
from warmpath_agent.inventory import GpuInventory
from warmpath_agent.warm_tier import (
    Demotion,
    PageCache,
    ServerSleep,
    Sleeper,
    SleepFailed,
    SleepKind,
    choose_demotion,
    estimated_asleep_gpu_bytes,
    estimated_wake_seconds,
    sleep_kind,
)
from warmpath_common.config import ModelSpec

__all__ = ["WarmTier"]

logger = logging.getLogger(__name__)


@dataclass
class WarmTier:
    """The agent's warm tier: its ports, its settings and the wakes it timed."""

    servers: ServerSleep
    page_cache: PageCache
    asleep_keep_alive_seconds: float = 3600.0
    timed_wakes: dict[str, float] = field(default_factory=dict)
    monotonic: Callable[[], float] = time.monotonic

    def wake_seconds(self, spec: ModelSpec, size_bytes: int) -> float | None:
        """The model's expected wake: its last measured one, else the published figure;
        None when its server cannot sleep."""
        kind = sleep_kind(spec)
        if kind is None:
            return None
        return self.timed_wakes.get(spec.name) or estimated_wake_seconds(kind, size_bytes)

    def decide(
        self,
        leaving: Sleeper,
        sleepers: list[Sleeper],
        host_free_bytes: int | None,
        *,
        asked: bool = False,
    ) -> Demotion:
        return choose_demotion(leaving, sleepers, host_free_bytes, asked=asked)

    async def put_to_sleep(
        self, spec: ModelSpec, running: RunningModel, driver: ModelDriver
    ) -> tuple[SleepKind, RunningModel | None, int]:
        """Sleeps `spec`'s server: its kind, the server still running (None for a page-cache
        sleep, whose server is stopped) and the host RAM its weights hold then, or 0 when
        the server does not say (the manager uses its footprint). Raises SleepFailed."""
        kind = sleep_kind(spec)
        if kind is None:
            raise SleepFailed(f"{spec.name}'s server cannot sleep")
        if kind is SleepKind.SERVER:
            await self.servers.sleep(spec.backend, running)
            return kind, running, 0
        await driver.stop(running)
        return kind, None, await self.page_cache.keep(spec)

    async def held_on_gpus(
        self, running: RunningModel, awake: Mapping[int, int], inventory: GpuInventory
    ) -> dict[int, int]:
        """GPU memory a sleeping server still holds on each of its GPUs (`awake`: what it
        held on each awake): NVML's reading of its processes, the one footprints use;
        else (a simulated inventory, or NVML lists none of its processes) the estimate
        from vLLM's documentation. It counts against those GPUs until it is unloaded."""
        if not inventory.simulated and running.pid is not None:
            measured = await inventory.process_memory(running.pid)
            if any(measured.get(gpu, 0) for gpu in awake):
                return {gpu: measured.get(gpu, 0) for gpu in awake}
        return {gpu: estimated_asleep_gpu_bytes(held) for gpu, held in awake.items()}

    def freed_by_eviction(
        self,
        spec: ModelSpec,
        size_bytes: int,
        leaving: Sleeper,
        sleepers: list[Sleeper],
        host_free_bytes: int | None,
    ) -> int:
        """GPU memory evicting the model frees: all of it, less what its server keeps
        asleep when it would sleep (the estimate: NVML reads it only once it sleeps)."""
        if sleep_kind(spec) is not SleepKind.SERVER:
            return size_bytes
        if not choose_demotion(leaving, sleepers, host_free_bytes).sleep:
            return size_bytes
        return size_bytes - estimated_asleep_gpu_bytes(size_bytes)

    async def wake_server(self, spec: ModelSpec, running: RunningModel) -> float:
        """Wakes a sleeping server; returns the seconds it took. Raises SleepFailed."""
        started = self.monotonic()
        await self.servers.wake(spec.backend, running)
        return self.record_wake(spec.name, self.monotonic() - started)

    async def found_asleep(self, spec: ModelSpec, running: RunningModel) -> bool:
        """A server found running at start-up (adopted) is asleep: a previous agent put
        it to sleep. Asked without waking it; False when it cannot say."""
        if sleep_kind(spec) is not SleepKind.SERVER:
            return False
        try:
            return await self.servers.is_sleeping(spec.backend, running)
        except SleepFailed as error:
            logger.warning("could not ask whether %s sleeps: %s", spec.name, error)
            return False

    def record_wake(self, model: str, seconds: float) -> float:
        self.timed_wakes[model] = seconds
        return seconds

    async def let_go(
        self, spec: ModelSpec, running: RunningModel | None, driver: ModelDriver
    ) -> None:
        """Unloads a sleeper: stops its server, or drops its file from the page cache."""
        if running is not None:
            await driver.stop(running)
            return
        try:
            await self.page_cache.drop(spec)
        except SleepFailed as error:
            logger.warning("could not drop %s from the page cache: %s", spec.name, error)
