"""GPU readings and the port that produces them (NVML or a simulated inventory)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["GpuInventory", "GpuProcessReading", "GpuReading", "HostMemory", "MemoryBook"]


@dataclass(frozen=True, slots=True)
class GpuProcessReading:
    pid: int
    used_memory_bytes: int


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU as last read. Memory figures are live readings on real GPUs."""

    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    simulated: bool
    healthy: bool = True
    unhealthy_reason: str = ""
    utilization_percent: int = 0
    temperature_celsius: int = 0
    power_watts: float = 0.0
    processes: tuple[GpuProcessReading, ...] = field(default=())


class GpuInventory(Protocol):
    """Reads the host's GPUs. Never raises for a failing GPU: it reports it unhealthy."""

    @property
    def simulated(self) -> bool: ...

    async def read(self) -> list[GpuReading]: ...

    async def process_memory(self, pid: int) -> Mapping[int, int]:
        """GPU memory held by `pid` and the processes it started, bytes by GPU index."""
        ...


class HostMemory(Protocol):
    """Host RAM available for offloaded layers (psutil, or declared when simulated)."""

    async def available_bytes(self) -> int: ...


class MemoryBook:
    """Memory the agent has promised to models, by model, with the GPUs it is on (one
    entry per GPU of a gang) and the host RAM an offloaded model uses.

    On real GPUs this covers loads in progress, which NVML cannot see yet; on a
    simulated inventory it is the only source of "used" memory.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[dict[int, int], bool]] = {}
        self._host: dict[str, int] = {}

    def book(self, model: str, gpu_index: int, size_bytes: int, *, loading: bool) -> None:
        self.book_gang(model, {gpu_index: size_bytes}, loading=loading)

    def book_gang(self, model: str, per_gpu: Mapping[int, int], *, loading: bool) -> None:
        self._entries[model] = (dict(per_gpu), loading)

    def book_host(self, model: str, size_bytes: int) -> None:
        if size_bytes > 0:
            self._host[model] = size_bytes

    def release(self, model: str) -> None:
        """Every GPU's share and the host RAM: a gang is booked and freed as one."""
        self._entries.pop(model, None)
        self._host.pop(model, None)

    def bytes_of(self, model: str, gpu_index: int) -> int:
        """What `model` holds booked on `gpu_index` (0 if nothing)."""
        entry = self._entries.get(model)
        return 0 if entry is None else entry[0].get(gpu_index, 0)

    def booked_bytes(self, gpu_index: int) -> int:
        return sum(per_gpu.get(gpu_index, 0) for per_gpu, _ in self._entries.values())

    def loading_bytes(self, gpu_index: int) -> int:
        return sum(
            per_gpu.get(gpu_index, 0) for per_gpu, loading in self._entries.values() if loading
        )

    def host_booked_bytes(self) -> int:
        return sum(self._host.values())
