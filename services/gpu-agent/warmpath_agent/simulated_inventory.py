"""A GPU inventory declared in config, for hosts without NVML. Labelled simulated everywhere."""

from __future__ import annotations

from collections.abc import Mapping

from warmpath_agent.inventory import GpuReading, MemoryBook
from warmpath_common.config import SimulatedGpu

__all__ = ["SimulatedInventory"]


class SimulatedInventory:
    """Declared GPUs whose used memory is what the agent has booked on them."""

    def __init__(self, gpus: tuple[SimulatedGpu, ...], book: MemoryBook) -> None:
        self._gpus = gpus
        self._book = book

    @property
    def simulated(self) -> bool:
        return True

    async def read(self) -> list[GpuReading]:
        readings = []
        for index, gpu in enumerate(self._gpus):
            total = int(gpu.memory)
            used = min(total, self._book.booked_bytes(index))
            readings.append(
                GpuReading(
                    index=index,
                    uuid=f"SIM-{index:08d}-0000-0000-0000-000000000000",
                    name=gpu.name,
                    memory_total_bytes=total,
                    memory_used_bytes=used,
                    memory_free_bytes=total - used,
                    simulated=True,
                )
            )
        return readings

    async def process_memory(self, pid: int) -> Mapping[int, int]:
        # Nothing to measure: simulated GPUs hold no real memory.
        return {}
