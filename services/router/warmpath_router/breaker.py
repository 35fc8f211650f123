"""Per-replica circuit breakers: stop sending to a replica that keeps failing.

After `threshold` consecutive retryable failures (UNAVAILABLE before the first
token) a replica's circuit opens for a cool-down that doubles with each trip
(capped). Silence (a try that got no first token in time, or ran into
DEADLINE_EXCEEDED) opens it at the first one, for a longer cool-down: a replica
that stopped answering costs every request sent to it the whole timeout, so
it is passed over at once while another ready replica exists. When the cool-down is over
the replica is admitted again only if the cluster view, fed by the agent's
health and state stream, shows it ready: re-admission never costs a generate
call. Placement never ejects the last viable replica of a model.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CircuitBreakers", "Key"]

Key = tuple[str, str]  # (host, model)


@dataclass
class _Breaker:
    failures: int = 0
    trips: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    def __init__(
        self,
        threshold: int = 3,
        cooldown_seconds: float = 5.0,
        max_cooldown_seconds: float = 60.0,
        silence_cooldown_seconds: float = 30.0,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._max_cooldown = max_cooldown_seconds
        self._silence_cooldown = silence_cooldown_seconds
        self._breakers: dict[Key, _Breaker] = {}

    def record_failure(self, key: Key, now: float) -> None:
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self._threshold:
            self._trip(breaker, now, self._cooldown)

    def record_silence(self, key: Key, now: float) -> None:
        """A try that went unanswered: opens the circuit at once."""
        self._trip(self._breakers.setdefault(key, _Breaker()), now, self._silence_cooldown)

    def _trip(self, breaker: _Breaker, now: float, cooldown: float) -> None:
        breaker.trips += 1
        breaker.failures = 0
        longest = max(self._max_cooldown, cooldown)
        breaker.open_until = max(
            breaker.open_until, now + min(cooldown * 2 ** (breaker.trips - 1), longest)
        )

    def record_success(self, key: Key) -> None:
        self._breakers.pop(key, None)

    def open_for(self, key: Key, now: float) -> float:
        """Seconds the circuit stays open, 0 when closed."""
        breaker = self._breakers.get(key)
        return 0.0 if breaker is None else max(0.0, breaker.open_until - now)
