"""Per-replica circuit breakers: stop sending to a replica that keeps failing.

After `threshold` consecutive retryable failures (UNAVAILABLE,
RESOURCE_EXHAUSTED before the first token) a replica's circuit opens for a
cool-down that doubles with each trip (capped). When the cool-down is over
the replica is admitted again only if the cluster view, fed by the agent's
health and state stream, shows it ready: re-admission never costs a generate
call. Placement never ejects the last viable replica of a model.
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]  # (host, model)


@dataclass
class _Breaker:
    failures: int = 0
    trips: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    def __init__(
        self, threshold: int = 3, cooldown_seconds: float = 5.0, max_cooldown_seconds: float = 60.0
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._max_cooldown = max_cooldown_seconds
        self._breakers: dict[Key, _Breaker] = {}

    def record_failure(self, key: Key, now: float) -> None:
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self._threshold:
            breaker.trips += 1
            breaker.failures = 0
            cooldown = min(self._cooldown * 2 ** (breaker.trips - 1), self._max_cooldown)
            breaker.open_until = now + cooldown

    def record_success(self, key: Key) -> None:
        self._breakers.pop(key, None)

    def open_for(self, key: Key, now: float) -> float:
        """Seconds the circuit stays open, 0 when closed."""
        breaker = self._breakers.get(key)
        return 0.0 if breaker is None else max(0.0, breaker.open_until - now)
