"""What the relay calls outside the router: the agents (load a model, hold a lease on
it) and the adapters (stream an answer). The real ones are in clients.py and
in_process_adapter.py; tests use the fakes in tests/fakes/ports.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from warmpath_common.convert import PlacementInfo
from warmpath_common.generation import AdapterEvent, Endpoint, GenerationRequest

__all__ = ["AdapterPort", "AgentPort", "LoadResult"]


@dataclass(frozen=True, slots=True)
class LoadResult:
    endpoint: Endpoint
    gpu_index: int
    gpu_uuid: str
    cold_start: bool
    load_seconds: float
    placement: PlacementInfo | None = None
    woken: bool = False
    """The agent woke the model from sleep (host RAM) rather than loading it from disk."""


class AgentPort(Protocol):
    async def ensure_loaded(
        self,
        host: str,
        model: str,
        timeout_seconds: float,
        warm_requests: int = 0,
        lease_seconds: float = 0.0,
        verify: bool = False,
    ) -> LoadResult: ...


class AdapterPort(Protocol):
    def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncGenerator[AdapterEvent, None]: ...
