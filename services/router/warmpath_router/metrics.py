"""The router's Prometheus metrics. Labels are registry names only, never caller text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from warmpath_common.generation import TextDelta
from warmpath_common.metrics import LATENCY_BUCKETS
from warmpath_router.decision import RoutedCompletion

__all__ = ["GenerateMeter", "RouterMetrics"]


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "warmpath_router_requests",
            "Generate requests by served model (or 'none') and outcome status.",
            ["model", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "warmpath_router_request_duration_seconds",
            "Generate latency, first byte in to last chunk out.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "warmpath_router_time_to_first_token_seconds",
            "From request arrival to the first text chunk (includes any cold load).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.output_tokens = Counter(
            "warmpath_router_output_tokens",
            "Tokens generated, by served model.",
            ["model"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "warmpath_router_in_flight_requests",
            "Generate requests in progress.",
            registry=registry,
        )
        self.fallbacks = Counter(
            "warmpath_router_fallbacks",
            "Fallback hops taken before the first token.",
            ["from_model", "to_model"],
            registry=registry,
        )
        self.first_token_timeouts = Counter(
            "warmpath_router_first_token_timeouts",
            "Tries cancelled for sending no first token in time, by model and host.",
            ["model", "host"],
            registry=registry,
        )
        self.abandoned_try_seconds = Counter(
            "warmpath_router_abandoned_try_seconds",
            "Seconds model servers spent on tries cancelled for silence (work that another "
            "try then did again), by model.",
            ["model"],
            registry=registry,
        )


class GenerateMeter:
    """One Generate request's metrics (a StreamMeter): labelled by the model that served
    it, known only once its completion arrives ("none" when no model did)."""

    def __init__(self, metrics: RouterMetrics) -> None:
        self._metrics = metrics
        self._served = "none"
        self._first_text_after: float | None = None

    def first_text(self, seconds: float) -> None:
        self._first_text_after = seconds

    def passed(self, event: TextDelta | RoutedCompletion) -> None:
        if isinstance(event, RoutedCompletion):
            self._served = event.route.served_model
            self._metrics.output_tokens.labels(self._served).inc(
                event.completion.usage.output_tokens
            )
            for hop in event.route.fallback_hops:
                self._metrics.fallbacks.labels(hop.from_model, hop.to_model).inc()

    def ended(self, outcome: str, seconds: float) -> None:
        metrics = self._metrics
        metrics.requests.labels(self._served, outcome).inc()
        if self._served != "none":
            metrics.duration.labels(self._served).observe(seconds)
            if self._first_text_after is not None:
                metrics.time_to_first_token.labels(self._served).observe(self._first_text_after)
