"""GPU readings and the port that produces them (NVML or a simulated inventory)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


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


class MemoryBook:
    """Memory the agent has promised to models, by model, with the GPU it is on.

    On real GPUs this covers loads in progress, which NVML cannot see yet; on a
    simulated inventory it is the only source of "used" memory.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int, bool]] = {}

    def book(self, model: str, gpu_index: int, size_bytes: int, *, loading: bool) -> None:
        self._entries[model] = (gpu_index, size_bytes, loading)

    def release(self, model: str) -> None:
        self._entries.pop(model, None)

    def booked_bytes(self, gpu_index: int) -> int:
        return sum(size for gpu, size, _ in self._entries.values() if gpu == gpu_index)

    def loading_bytes(self, gpu_index: int) -> int:
        return sum(
            size for gpu, size, loading in self._entries.values() if gpu == gpu_index and loading
        )
