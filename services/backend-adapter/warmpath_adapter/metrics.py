"""The backend-adapter's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from warmpath_common.metrics import LATENCY_BUCKETS

__all__ = ["AdapterMetrics"]


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
