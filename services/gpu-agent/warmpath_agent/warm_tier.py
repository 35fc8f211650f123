"""The warm tier: whether a model leaving its GPUs sleeps in host RAM or is unloaded.

Residency is a hierarchy, GPU -> host RAM -> disk. A model evicted from its GPUs (or
idle past its keep-alive) is demoted one step: put to sleep when its server can sleep
and sleeping pays, else unloaded. Pure functions of plain data plus the port the
adapters implement (sleep_api.py), so the agent and the simulator share the rule.

The cost model is eviction.py's, one tier down (docs/warm-tier.md):

    sleep_value(model) = (load_seconds - wake_seconds) * demand_per_minute

load-seconds per minute saved by keeping the model asleep rather than on disk; it
costs `host_bytes` of host RAM. A model sleeps when its value is positive and host RAM
has room, or can make room by unloading sleepers worth less per byte of host RAM.
Host RAM pressure unloads sleepers by the same rule, the least value per byte first.

Eviction prices a model that would sleep by `return_seconds`: its wake, plus what the
sleepers it would push out of host RAM lose. It skips waiting for room rather than
evict a hot-set model only when that model sleeps in free host RAM (`sleeps_freely`):
with little host RAM, a sleeper soon pushed out comes back in a load, not a wake.

What a sleeping server keeps on a GPU is a victim like any resident, but eviction keeps
it like the hot set (`kept_like_the_hot_set`): unloading the sleeper costs a load later.

A sleeping server wakes only on its own GPUs. When room there comes only once a load
in progress has finished (`room_in_seconds`), and that wait plus the wake is longer
than a load from disk, it is unloaded and loaded elsewhere (`moves_rather_than_waits`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from warmpath_agent.drivers import RunningModel
from warmpath_agent.eviction import GpuRoom
from warmpath_common.config import BackendKindName, ModelSpec, Runtime

__all__ = [
    "Demotion",
    "PageCache",
    "ServerSleep",
    "SleepFailed",
    "SleepKind",
    "Sleeper",
    "choose_demotion",
    "estimated_asleep_gpu_bytes",
    "estimated_wake_seconds",
    "kept_like_the_hot_set",
    "moves_rather_than_waits",
    "return_seconds",
    "room_in_seconds",
    "sleep_kind",
    "sleepers_to_unload",
    "sleeps_freely",
]


class SleepKind(StrEnum):
    SERVER = "server"
    """The server keeps running with its weights in host RAM (vLLM sleep level 1,
    SGLang's released memory occupation); waking puts them back on its GPUs."""
    PAGE_CACHE = "page_cache"
    """llama.cpp has no sleep API: the server is stopped and its GGUF kept in the page
    cache; the wake is a reload that reads no disk."""


class SleepFailed(Exception):
    """A sleep or wake call failed; the message says which server and why."""


class ServerSleep(Protocol):
    """A model server's own sleep and wake endpoints (sleep_api.py). Only the agent
    calls them; nothing in Warmpath exposes them."""

    async def sleep(self, backend: BackendKindName, running: RunningModel) -> None: ...

    async def wake(self, backend: BackendKindName, running: RunningModel) -> None: ...

    async def is_sleeping(self, backend: BackendKindName, running: RunningModel) -> bool:
        """Asks without waking it (vLLM's GET /is_sleeping); False when it cannot say."""
        ...


class PageCache(Protocol):
    """Keeps or drops a model file's pages in the host's page cache (sleep_api.py)."""

    async def keep(self, spec: ModelSpec) -> int:
        """Asks the kernel to keep the model's file cached; returns its size in bytes."""
        ...

    async def drop(self, spec: ModelSpec) -> None: ...


def sleep_kind(spec: ModelSpec) -> SleepKind | None:
    """How `spec`'s server can sleep, or None (Ollama unloads by itself)."""
    if spec.backend in (BackendKindName.VLLM, BackendKindName.SGLANG):
        return SleepKind.SERVER if spec.effective_runtime is Runtime.DOCKER else None
    if spec.backend is BackendKindName.LLAMA_CPP and spec.effective_runtime is Runtime.PROCESS:
        return SleepKind.PAGE_CACHE
    return None


# Wakes for a model never woken here, from the published figures: vLLM's sleep mode
# level 1 wakes in 0.3-3 s (vLLM blog, "Zero-Reload Model Switching with vLLM Sleep
# Mode", 2025); a llama.cpp reload from the page cache in 1-2 s. A fixed start plus the
# weights at host-to-GPU (server) or page-cache-to-GPU (reload) speed.
_WAKE_START_SECONDS = {SleepKind.SERVER: 0.3, SleepKind.PAGE_CACHE: 1.0}
_WAKE_BYTES_PER_SECOND = {SleepKind.SERVER: 8 * 1024**3, SleepKind.PAGE_CACHE: 4 * 1024**3}


def estimated_wake_seconds(kind: SleepKind, size_bytes: int) -> float:
    return _WAKE_START_SECONDS[kind] + max(size_bytes, 0) / _WAKE_BYTES_PER_SECOND[kind]


# A sleeping server keeps some GPU memory: its CUDA context, allocator pools and CUDA
# graphs. vLLM's documentation ("Sleep Mode") says level 1 releases "up to 90%+ of GPU
# memory": a tenth of what it held awake stays, where NVML cannot measure it (a
# simulated inventory).
_ASLEEP_GPU_SHARE = 0.1


def estimated_asleep_gpu_bytes(awake_bytes: int) -> int:
    """GPU memory a server asleep still holds, from what it held awake."""
    return int(max(awake_bytes, 0) * _ASLEEP_GPU_SHARE)


@dataclass(frozen=True, slots=True)
class Sleeper:
    """A model asleep, or one that could be put to sleep."""

    model: str
    host_bytes: int
    load_seconds: float
    wake_seconds: float
    demand_per_minute: float
    pinned: bool = False

    @property
    def value(self) -> float:
        """Load-seconds per minute saved by keeping it asleep rather than on disk."""
        return max(self.load_seconds - self.wake_seconds, 0.0) * self.demand_per_minute

    @property
    def value_per_byte(self) -> float:
        return self.value / max(self.host_bytes, 1)


@dataclass(frozen=True, slots=True)
class Demotion:
    sleep: bool
    unload_sleepers: tuple[str, ...] = ()
    """Sleepers to unload first, to make host RAM room for this one."""
    reason: str = ""


def choose_demotion(
    leaving: Sleeper,
    sleepers: Sequence[Sleeper],
    host_free_bytes: int | None,
    *,
    asked: bool = False,
) -> Demotion:
    """Sleep or unload `leaving`. `sleepers`: the models asleep now; `host_free_bytes`:
    host RAM available now, None when it is not accounted (always room). `asked`: an
    operator asked for its sleep (Unload with `sleep`): it sleeps where host RAM has
    room, whether or not its wake was measured faster than its load."""
    if leaving.load_seconds <= leaving.wake_seconds and not asked:
        return Demotion(
            False,
            reason=f"waking ({leaving.wake_seconds:.1f} s) is no faster than a load "
            f"({leaving.load_seconds:.1f} s)",
        )
    saving = (
        "put to sleep on request"
        if asked
        else f"saves {leaving.load_seconds - leaving.wake_seconds:.1f} s at its next request"
    )
    if host_free_bytes is None or leaving.host_bytes <= host_free_bytes:
        return Demotion(True, reason=saving)
    shortfall = leaving.host_bytes - host_free_bytes
    cheaper = [s for s in sleepers if s.value_per_byte < leaving.value_per_byte]
    unload = sleepers_to_unload(cheaper, shortfall)
    if unload is None:
        return Demotion(
            False,
            reason=f"host RAM is short by {shortfall / 1024**2:.0f} MiB and the models asleep "
            "are worth more per byte",
        )
    return Demotion(True, unload, saving)


def sleepers_to_unload(sleepers: Sequence[Sleeper], shortfall: int) -> tuple[str, ...] | None:
    """The sleepers freeing `shortfall` bytes of host RAM at least value, the least value
    per byte first; None when all of them together do not free enough."""
    if shortfall <= 0:
        return ()
    chosen: list[str] = []
    freed = 0
    for sleeper in sorted(
        (s for s in sleepers if not s.pinned), key=lambda s: (s.value_per_byte, s.value)
    ):
        if freed >= shortfall:
            break
        chosen.append(sleeper.model)
        freed += sleeper.host_bytes
    return tuple(chosen) if freed >= shortfall else None


def return_seconds(
    leaving: Sleeper, sleepers: Sequence[Sleeper], host_free_bytes: int | None
) -> float:
    """What bringing `leaving` back costs if it leaves its GPUs now, in its own load-seconds:
    its load when it would be unloaded; when it would sleep, its wake plus the value of the
    sleepers its sleep pushes out of host RAM (they come back in a load), never more than
    its load. Counting its wake alone made eviction cheap and churn host RAM when host RAM
    is small: the tier then loaded more from disk than no tier at all (docs/warm-tier.md)."""
    demotion = choose_demotion(leaving, sleepers, host_free_bytes)
    if not demotion.sleep:
        return leaving.load_seconds
    pushed_out = sum(s.value for s in sleepers if s.model in demotion.unload_sleepers)
    if pushed_out <= 0:
        return min(leaving.load_seconds, leaving.wake_seconds)
    if leaving.demand_per_minute <= 0:
        return leaving.load_seconds
    return min(leaving.load_seconds, leaving.wake_seconds + pushed_out / leaving.demand_per_minute)


def sleeps_freely(
    leaving: Sleeper, sleepers: Sequence[Sleeper], host_free_bytes: int | None
) -> bool:
    """`leaving` would sleep in host RAM that is free now, pushing no sleeper out."""
    demotion = choose_demotion(leaving, sleepers, host_free_bytes)
    return demotion.sleep and not demotion.unload_sleepers


def room_in_seconds(room: GpuRoom, need: int, now: float, min_residency_seconds: float) -> float:
    """The soonest `room` could hold `need` bytes by what frees itself there: a model still
    loading or waking (its `resident_since` ahead of `now`: when it is expected ready) and
    a young one, once past min_residency; one with requests in flight at once (they take
    seconds); a pinned one never. Optimistic: the hot set may still keep what frees."""
    free = room.free_bytes
    if free >= need:
        return 0.0
    for seconds, size in sorted(
        (max(r.resident_since + min_residency_seconds - now, 0.0), r.size_bytes)
        for r in room.residents
        if not r.pinned
    ):
        free += size
        if free >= need:
            return seconds
    return math.inf


def moves_rather_than_waits(room_in: float, wake_seconds: float, load_seconds: float) -> bool:
    """A sleeping server whose GPUs have room only in `room_in` seconds is unloaded and
    loaded from disk elsewhere when that load is sooner than the wait and its wake: a
    model loading there for a minute must not hold its wake (and its callers) that long,
    to be evicted as soon as it is ready."""
    return room_in + wake_seconds > load_seconds


def kept_like_the_hot_set(
    protected: frozenset[str], rooms: Sequence[GpuRoom], asleep: Collection[str]
) -> frozenset[str]:
    """What eviction keeps like the hot set: the hot set (`protected`), and the sleeping
    servers (`asleep`) whose leftover GPU memory is among `rooms`' residents. Unloading
    one for that leftover (a tenth of it) costs its next request a load instead of a
    wake. Left unprotected, a sleeper outside the hot set went before hot-set models
    that would only sleep (a wake): placements unloaded sleepers for a sliver of memory,
    and their next requests loaded from disk (docs/warm-tier.md)."""
    return protected | {r.model for room in rooms for r in room.residents if r.model in asleep}
