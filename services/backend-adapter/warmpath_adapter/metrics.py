"""The backend-adapter's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from warmpath_common.generation import AdapterEvent, Completion
from warmpath_common.metrics import LATENCY_BUCKETS

__all__ = ["AdapterMetrics", "BackendMeter"]


class AdapterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "warmpath_adapter_requests",
            "Backend requests by backend kind and outcome status.",
            ["backend", "outcome"],
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "warmpath_adapter_time_to_first_token_seconds",
            "From sending the request to the backend to its first text chunk.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.output_tokens = Counter(
            "warmpath_adapter_output_tokens",
            "Tokens generated, by backend kind.",
            ["backend"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "warmpath_adapter_in_flight_requests",
            "Backend requests in progress.",
            registry=registry,
        )


class BackendMeter:
    """One backend request's metrics (a StreamMeter), labelled by backend kind."""

    def __init__(self, metrics: AdapterMetrics, backend: str) -> None:
        self._metrics = metrics
        self._backend = backend

    def first_text(self, seconds: float) -> None:
        self._metrics.time_to_first_token.labels(self._backend).observe(seconds)

    def passed(self, event: AdapterEvent) -> None:
        if isinstance(event, Completion):
            self._metrics.output_tokens.labels(self._backend).inc(event.usage.output_tokens)

    def ended(self, outcome: str, seconds: float) -> None:
        self._metrics.requests.labels(self._backend, outcome).inc()
