"""The gpu-agent's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from warmpath_agent.inventory import GpuReading

__all__ = ["AgentMetrics"]

_LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loads = Counter(
            "warmpath_agent_loads",
            "Model loads by outcome (ok, failed).",
            ["model", "outcome"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            "warmpath_agent_load_seconds",
            "Time from starting a model server to its readiness.",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self.unloads = Counter(
            "warmpath_agent_unloads",
            "Models unloaded, by reason (evicted, keep_alive, request, host_ram, crashed, "
            "unresponsive).",
            ["model", "reason"],
            registry=registry,
        )
        self.sleeps = Counter(
            "warmpath_agent_sleeps",
            "Models put to sleep in host RAM instead of unloaded, by how (server, page_cache).",
            ["model", "kind"],
            registry=registry,
        )
        self.wakes = Counter(
            "warmpath_agent_wakes",
            "Models woken from sleep, by outcome (ok, failed).",
            ["model", "outcome"],
            registry=registry,
        )
        self.wake_seconds = Histogram(
            "warmpath_agent_wake_seconds",
            "Time from asking a sleeping model back to its readiness.",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self.unresponsive = Counter(
            "warmpath_agent_unresponsive_servers",
            "Model servers reported unresponsive: alive, but failing their readiness probes.",
            ["model"],
            registry=registry,
        )
        self.hung_restarts = Counter(
            "warmpath_agent_hung_server_restarts",
            "Unresponsive model servers stopped and marked failed after the restart grace.",
            ["model"],
            registry=registry,
        )
        self.gpu_memory_used = Gauge(
            "warmpath_agent_gpu_memory_used_bytes",
            "GPU memory in use (live reading; booked memory on simulated GPUs).",
            ["gpu", "uuid", "simulated"],
            registry=registry,
        )
        self.gpu_memory_total = Gauge(
            "warmpath_agent_gpu_memory_total_bytes",
            "GPU memory in total.",
            ["gpu", "uuid", "simulated"],
            registry=registry,
        )
        self.gpu_healthy = Gauge(
            "warmpath_agent_gpu_healthy",
            "1 when the GPU's last reading succeeded.",
            ["gpu", "uuid", "simulated"],
            registry=registry,
        )

    def observe_gpus(self, gpus: tuple[GpuReading, ...]) -> None:
        for gpu in gpus:
            labels = (str(gpu.index), gpu.uuid, str(gpu.simulated).lower())
            self.gpu_memory_used.labels(*labels).set(gpu.memory_used_bytes)
            self.gpu_memory_total.labels(*labels).set(gpu.memory_total_bytes)
            self.gpu_healthy.labels(*labels).set(1 if gpu.healthy else 0)
