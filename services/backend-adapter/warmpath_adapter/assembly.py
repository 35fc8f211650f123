"""Builds the adapter's dispatcher: shared by its own server and by a router that runs
the adapter in-process (`hosts[].adapter: in-process`)."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from warmpath_adapter.admission import BackendAdmission
from warmpath_adapter.backends import BackendDispatcher
from warmpath_adapter.metrics import AdapterMetrics
from warmpath_adapter.ollama_backend import OllamaBackend
from warmpath_adapter.openai_backend import OpenAICompatibleBackend
from warmpath_common.config import AdapterSettings, BackendKindName
from warmpath_common.telemetry import TraceContentPolicy

__all__ = ["build_dispatcher", "http_client"]


def http_client() -> httpx.AsyncClient:
    """One pooled client for every model server: connections are reused across requests."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
    )


def build_dispatcher(
    settings: AdapterSettings,
    client: httpx.AsyncClient,
    content: TraceContentPolicy,
    metrics: CollectorRegistry,
) -> BackendDispatcher:
    timeouts = (settings.idle_timeout_seconds, settings.connect_timeout_seconds)
    openai = OpenAICompatibleBackend(client, *timeouts, content_policy=content)
    return BackendDispatcher(
        {
            BackendKindName.LLAMA_CPP: openai,
            BackendKindName.VLLM: openai,
            BackendKindName.SGLANG: openai,
            BackendKindName.OLLAMA: OllamaBackend(client, *timeouts, content_policy=content),
        },
        AdapterMetrics(metrics),
        BackendAdmission(settings.max_concurrent_per_backend, settings.max_queued_per_backend),
        settings.one_at_a_time,
    )
