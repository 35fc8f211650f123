"""Host RAM for offloaded layers: read live through psutil, or declared for a simulated host."""

from __future__ import annotations

import asyncio

import psutil

from warmpath_agent.inventory import MemoryBook

__all__ = ["DeclaredHostMemory", "LiveHostMemory"]


class LiveHostMemory:
    """What the kernel says is available now, less what offloaded models have booked:
    their layers are mmapped from the GGUF, which the kernel counts as reclaimable page
    cache, so `available` alone would offer the same memory twice."""

    def __init__(self, book: MemoryBook) -> None:
        self._book = book

    async def available_bytes(self) -> int:
        memory = await asyncio.to_thread(psutil.virtual_memory)
        return max(0, int(memory.available) - self._book.host_booked_bytes())


class DeclaredHostMemory:
    """A simulated host's declared RAM, less what offloaded models have booked."""

    def __init__(self, total_bytes: int, book: MemoryBook) -> None:
        self._total = total_bytes
        self._book = book

    async def available_bytes(self) -> int:
        return max(0, self._total - self._book.host_booked_bytes())
