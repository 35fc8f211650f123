"""Demand estimation: how soon each model is expected to be asked for again, from
its recent gaps between requests. The eviction policy (eviction.py) turns it into
reload costs and the hot set's ranking; the derivation is in docs/architecture.md,
"How the policy is derived"."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["DemandTracker"]


class DemandTracker:
    """How soon each model is expected to be asked for again, from its recent
    inter-arrival gaps (the formula: docs/architecture.md, "How the policy is derived")."""

    def __init__(
        self,
        keep_gaps: int = 48,
        recency_weight: float = 0.9,
        first_gap_seconds: float = 300.0,
    ) -> None:
        self._keep = keep_gaps
        self._weight = recency_weight
        self._first_gap = first_gap_seconds
        self._last: dict[str, float] = {}
        self._gaps: dict[str, deque[float]] = {}

    def record(self, model: str, now: float, requests: int = 1) -> None:
        """`requests` at once: served since the last record (the router reports warm
        requests in batches), so they share the time since then evenly."""
        requests = max(1, requests)
        last = self._last.get(model)
        if last is not None:
            gaps = self._gaps.setdefault(model, deque(maxlen=self._keep))
            gaps.extend([max(0.0, now - last) / requests] * min(requests, self._keep))
        self._last[model] = max(now, last) if last is not None else now

    def expected_seconds_to_next(self, model: str, now: float) -> float:
        last = self._last.get(model)
        if last is None:
            return math.inf
        idle = max(0.0, now - last)
        gaps = self._gaps.get(model)
        if not gaps:
            return max(idle, self._first_gap)
        residual = weights = 0.0
        weight = 1.0
        for gap in reversed(gaps):
            if gap > idle:
                residual += weight * (gap - idle)
                weights += weight
            weight *= self._weight
        # Idle for longer than any recent gap: whatever the pattern was has stopped,
        # and the longer a model has been idle, the longer it is likely to stay so.
        return residual / weights if weights > 0 else idle

    def average_seconds_to_next(self, model: str, now: float) -> float:
        """The wait for the next request from a moment picked at random over the recent
        gaps (the inspection paradox's mean residual life); like expected_seconds_to_next
        for a model asked for once or idle for longer than every recent gap."""
        last = self._last.get(model)
        gaps = self._gaps.get(model)
        if last is None or not gaps or max(0.0, now - last) >= max(gaps):
            return self.expected_seconds_to_next(model, now)
        lengths = squares = 0.0
        weight = 1.0
        for gap in reversed(gaps):
            lengths += weight * gap
            squares += weight * gap * gap
            weight *= self._weight
        return squares / (2 * lengths)

    def per_minute(self, model: str, now: float) -> float:
        # A floor of a second: a request due "now" must not make the cost infinite.
        return 60.0 / max(self.expected_seconds_to_next(model, now), 1.0)

    def hot_set_per_minute(self, model: str, now: float) -> float:
        """Demand as the hot set ranks it: from the shorter of the conditional and the
        time-averaged waits for the next request."""
        expected = min(
            self.expected_seconds_to_next(model, now), self.average_seconds_to_next(model, now)
        )
        return 60.0 / max(expected, 1.0)
