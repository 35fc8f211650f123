"""What a failed try means: how it counts against its replica, and whether another
replica may still serve the request (see the relay's failure rule)."""

from __future__ import annotations

from dataclasses import dataclass

from warmpath_common.errors import (
    DeadlineExceeded,
    PeerLost,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
)
from warmpath_router.breaker import CircuitBreakers
from warmpath_router.first_token import SilentTry
from warmpath_router.metrics import RouterMetrics

__all__ = ["ReplicaFailed", "TryProgress", "judge_failure"]


class ReplicaFailed(Exception):
    """A retryable failure on one host that reached neither the caller nor a model
    server (or whose work there was abandoned), so another replica may serve the
    request."""

    def __init__(self, host: str, error: WarmpathError, *, asked_agent: bool) -> None:
        super().__init__(error.message)
        self.host = host
        self.error = error
        self.asked_agent = asked_agent
        """Whether this try asked the agent for the model, or took a ready replica's
        endpoint from the cluster view."""


@dataclass(frozen=True, slots=True)
class TryProgress:
    """How far one failed try got."""

    handed_at: float | None
    """When the adapter got it; None if it never did (placement or load failed)."""
    sent_anything: bool
    """Whether any chunk reached the caller (the stream is then committed)."""
    first_token_limit: float
    """The try's first-token timeout, in seconds."""
    asked_agent: bool
    """Whether the try asked the agent for the model."""


def judge_failure(
    error: Exception,
    key: tuple[str, str],
    within_deadline: bool,
    breakers: CircuitBreakers,
    metrics: RouterMetrics,
    now: float,
    tried: TryProgress,
) -> ReplicaFailed | None:
    """Counts the failed try of `key` (host, model) against its replica, and says what
    to raise: a ReplicaFailed when another replica may serve the request, None for
    `error` as it is. `within_deadline`: the caller's deadline had not yet passed."""
    host, model = key
    before_first_token = tried.handed_at is not None and not tried.sent_anything
    if isinstance(error, SilentTry):
        # Nothing reached the caller and the try is cancelled at the model server:
        # another replica may serve it; this one is passed over for a while.
        breakers.record_silence(key, now)
        metrics.first_token_timeouts.labels(model, host).inc()
        metrics.abandoned_try_seconds.labels(model).inc(error.waited_seconds)
        silent = Unavailable(
            f"{model} on {host} sent no first token within {tried.first_token_limit:.1f} s "
            "(its first-token timeout); the try was cancelled"
        )
        return ReplicaFailed(host, silent, asked_agent=True)
    if isinstance(error, DeadlineExceeded):
        if before_first_token and within_deadline:
            # Before the caller's deadline: the server stalled (the adapter's idle
            # timeout), silence as much as a first-token timeout.
            breakers.record_silence(key, now)
        elif before_first_token:
            # The caller's own deadline ran out: maybe too short, maybe not the
            # replica's fault; an ordinary failure.
            breakers.record_failure(key, now)
        return None
    if not isinstance(error, WarmpathError):
        return None
    if isinstance(error, PeerLost) and before_first_token and not error.not_sent:
        # The adapter's connection died before a first token (keepalive found the host
        # gone): as with silence, its work is abandoned (an adapter that lives on sees
        # the call cancelled) and another replica may serve it.
        breakers.record_silence(key, now)
        metrics.abandoned_try_seconds.labels(model).inc(now - (tried.handed_at or now))
        return ReplicaFailed(host, error, asked_agent=True)
    # A replica that is full is busy, not broken: opening its circuit would turn a
    # moment of overload into seconds of refusing everything.
    if not isinstance(error, ResourceExhausted):
        breakers.record_failure(key, now)
    if tried.sent_anything or (tried.handed_at is not None and not error.not_sent):
        return None
    return ReplicaFailed(host, error, asked_agent=tried.asked_agent)
