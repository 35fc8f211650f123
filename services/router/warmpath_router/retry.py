"""A retry budget: retries may add at most a fixed fraction to the load.

Every request deposits `ratio` of a token; a retry spends a whole one. Tokens
also trickle in at `floor_per_second` so a quiet router can still retry, and
never exceed `cap`. When the backends are failing broadly, retries stop
instead of multiplying the traffic that is hurting them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RetryBudget"]


class RetryBudget:
    def __init__(
        self,
        ratio: float = 0.2,
        floor_per_second: float = 1.0,
        cap: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ratio = ratio
        self._floor = floor_per_second
        self._cap = cap
        self._clock = clock
        self._tokens = cap
        self._at = clock()

    def record_request(self) -> None:
        self._refill()
        self._tokens = min(self._cap, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._cap, self._tokens + (now - self._at) * self._floor)
        self._at = now
