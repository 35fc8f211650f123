"""Per-backend admission: a bounded number of requests run, a bounded number wait.

An inference server slows every stream it serves as it takes more; past its
limit the adapter queues a few more and refuses the rest at once with
RESOURCE_EXHAUSTED, rather than letting them pile up until deadlines expire.
A request waiting in the queue gives its place up when its caller leaves.
A refusal is marked not-sent: the model server never saw the request, so the
router may try another replica. A server known to serve one request at a time
(llama-cpp-python's) is sent one at a time, so the adapter knows which requests
wait their turn and can tell the router (their wait is not silence).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from warmpath_common.errors import ResourceExhausted

__all__ = ["BackendAdmission"]


@dataclass
class _Backend:
    running: asyncio.Semaphore
    waiting: int = 0
    active: int = field(default=0)


class BackendAdmission:
    def __init__(self, max_running: int, max_waiting: int) -> None:
        self._max_running = max_running
        self._max_waiting = max_waiting
        self._backends: dict[str, _Backend] = {}

    def _slots(self, backend: str, one_at_a_time: bool) -> _Backend:
        slots = self._backends.get(backend)
        if slots is None:
            limit = min(1, self._max_running) if one_at_a_time else self._max_running
            slots = _Backend(asyncio.Semaphore(limit))
            self._backends[backend] = slots
        return slots

    def ahead(self, backend: str, one_at_a_time: bool = False) -> int:
        """Requests a new one would wait behind (running and waiting), 0 if it would
        run at once."""
        slots = self._slots(backend, one_at_a_time)
        return slots.active + slots.waiting if slots.running.locked() else 0

    @asynccontextmanager
    async def admit(self, backend: str, one_at_a_time: bool = False) -> AsyncIterator[None]:
        slots = self._slots(backend, one_at_a_time)
        if slots.running.locked():
            if slots.waiting >= self._max_waiting:
                raise ResourceExhausted(
                    f"backend {backend} is at capacity ({self._max_running} running, "
                    f"{slots.waiting} waiting; adapter.max_concurrent_per_backend and "
                    "adapter.max_queued_per_backend); retry later or elsewhere",
                    not_sent=True,
                )
            slots.waiting += 1
            try:
                await slots.running.acquire()
            finally:
                slots.waiting -= 1
        else:
            await slots.running.acquire()
        slots.active += 1
        try:
            yield
        finally:
            slots.active -= 1
            slots.running.release()

    def load(self, backend: str) -> tuple[int, int]:
        """(running, waiting) for a backend."""
        slots = self._backends.get(backend)
        return (0, 0) if slots is None else (slots.active, slots.waiting)
