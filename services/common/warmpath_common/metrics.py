"""Prometheus exposition shared by the services: one registry per service, no globals."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    start_http_server,
)

__all__ = ["LATENCY_BUCKETS", "HealthProbeCounter", "serve_metrics"]

logger = logging.getLogger(__name__)

# Seconds; wide enough for a cold load and for a sub-millisecond hop.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

_HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


def serve_metrics(listen: str, registry: CollectorRegistry, field: str) -> None:
    """Serves /metrics from a background thread (never on the request path), with the
    process's memory, file descriptors and asyncio tasks, so leaks show.

    `field` is the config path of `listen` (e.g. "router.metrics_listen"), named
    in the error when the address cannot be bound."""
    ProcessCollector(registry=registry)
    tasks = Gauge("warmpath_asyncio_tasks", "asyncio tasks alive.", registry=registry)
    loop = asyncio.get_running_loop()
    # Counted from the scrape's thread: asyncio.all_tasks copes with the set
    # changing meanwhile, and the figure is only read for trends.
    tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
    host, port = listen.rsplit(":", 1)
    try:
        start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    except OSError as error:
        raise OSError(
            f"cannot serve /metrics on {listen} ({field}): {error.strerror or error}; "
            "choose a free port or leave the field empty"
        ) from error
    logger.info("metrics on http://%s/metrics", listen)


class HealthProbeCounter:
    """Counts health probes, so an operator can see who probes how often."""

    def __init__(self, registry: CollectorRegistry) -> None:
        probes = Counter(
            "warmpath_health_probes",
            "gRPC health-check calls received.",
            ["method"],
            registry=registry,
        )
        self._by_method = {
            method: probes.labels(method.rsplit("/", 1)[1]) for method in _HEALTH_METHODS
        }

    def count(self, method: str) -> None:
        probe = self._by_method.get(method)
        if probe is not None:
            probe.inc()
