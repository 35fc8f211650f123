from __future__ import annotations

from warmpath_router.breaker import CircuitBreakers

KEY = ("h1", "m")


def test_opens_after_threshold_and_cools_down_longer_each_trip() -> None:
    breakers = CircuitBreakers(threshold=3, cooldown_seconds=5, max_cooldown_seconds=12)
    for _ in range(2):
        breakers.record_failure(KEY, now=0)
    assert breakers.open_for(KEY, now=0) == 0
    breakers.record_failure(KEY, now=0)
    assert breakers.open_for(KEY, now=1) == 4
    for _ in range(3):
        breakers.record_failure(KEY, now=10)
    assert breakers.open_for(KEY, now=10) == 10  # doubled
    for _ in range(3):
        breakers.record_failure(KEY, now=30)
    assert breakers.open_for(KEY, now=30) == 12  # capped


def test_success_closes_and_forgets() -> None:
    breakers = CircuitBreakers(threshold=1)
    breakers.record_failure(KEY, now=0)
    assert breakers.open_for(KEY, now=0) > 0
    breakers.record_success(KEY)
    assert breakers.open_for(KEY, now=0) == 0


def test_silence_opens_at_the_first_one_for_longer() -> None:
    breakers = CircuitBreakers(threshold=3, cooldown_seconds=5, silence_cooldown_seconds=30)
    breakers.record_silence(KEY, now=0)
    assert breakers.open_for(KEY, now=0) == 30
    breakers.record_success(KEY)
    assert breakers.open_for(KEY, now=0) == 0
