"""The leases a router holds at the agents on the models it uses.

While a router has requests in flight on a model it holds a lease on it at the
agent, so the model is not evicted under them; a router that dies lets it lapse.
Warm requests tell the agent a model is in use at most every few seconds, so that
keep-alive does not expire a busy model, without an extra RPC per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from warmpath_common.errors import WarmpathError
from warmpath_router.ports import AgentPort

__all__ = ["LEASE_SECONDS", "RENEW_EVERY_SECONDS", "Leases"]

logger = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
"""How long a lease lasts unless renewed."""
RENEW_EVERY_SECONDS = 5.0
"""How often the leases in use are renewed."""
_LEASE_CALL_TIMEOUT_SECONDS = 5.0


class Leases:
    """Leases on (host, model) pairs: taken by a load, renewed in the background."""

    def __init__(
        self,
        agents: AgentPort,
        in_flight: Counter[tuple[str, str]],
        clock: Callable[[], float],
    ) -> None:
        self._agents = agents
        self._in_flight = in_flight
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}
        self._warm_requests: dict[tuple[str, str], int] = {}
        self._background: set[asyncio.Task[None]] = set()

    def taken(self, host: str, model: str) -> None:
        """A load call that asks for a lease is about to be made."""
        self._until[(host, model)] = self._clock() + LEASE_SECONDS

    def touch(self, host: str, model: str) -> None:
        """Counts a warm request; takes a lease at once if the model has none from us."""
        key = (host, model)
        self._warm_requests[key] = self._warm_requests.get(key, 0) + 1
        if self._until.get(key, 0.0) <= self._clock():
            self._renew(key)

    async def keep(self, every_seconds: float = RENEW_EVERY_SECONDS) -> None:
        """Renews, every few seconds, the lease on each model with requests in flight,
        and tells the agents how many warm requests each model served meanwhile."""
        while True:
            await asyncio.sleep(every_seconds)
            for key in {k for k, n in self._in_flight.items() if n > 0} | set(self._warm_requests):
                self._renew(key)

    def _renew(self, key: tuple[str, str]) -> None:
        host, model = key
        self._until[key] = self._clock() + LEASE_SECONDS
        served = self._warm_requests.pop(key, 0)

        async def renew() -> None:
            try:
                await self._agents.ensure_loaded(
                    host,
                    model,
                    _LEASE_CALL_TIMEOUT_SECONDS,
                    warm_requests=served,
                    lease_seconds=LEASE_SECONDS,
                )
            except WarmpathError as error:
                self._until.pop(key, None)
                logger.debug("lease on %s at %s not renewed: %s", model, host, error.message)

        task = asyncio.create_task(renew())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def close(self) -> None:
        """Cancels the renewals still under way."""
        for task in list(self._background):
            task.cancel()
