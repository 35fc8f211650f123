"""What Route and Generate report: the decision, the route a stream took, and the
fallback hops on the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warmpath_common.config import BackendKindName
from warmpath_common.convert import PlacementInfo
from warmpath_common.generation import Completion
from warmpath_router.registry import Resolution, ResolvedModel
from warmpath_router.routing import Placement

__all__ = ["Decision", "FallbackHop", "RouteListener", "RouteTaken", "RoutedCompletion"]


@dataclass(frozen=True, slots=True)
class FallbackHop:
    from_model: str
    to_model: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What Route reports: the placement Generate would use right now."""

    resolved: ResolvedModel
    placement: Placement
    backend: BackendKindName
    gpu_uuid: str
    fallback_chain: tuple[str, ...]
    fallback_hops: tuple[FallbackHop, ...]
    trace_id: str


@dataclass(frozen=True, slots=True)
class RouteTaken:
    requested_model: str
    served_model: str
    resolution: Resolution
    alias: str
    host: str
    gpu_index: int
    gpu_uuid: str
    backend: BackendKindName
    cold_start: bool
    load_seconds: float
    fallback_hops: tuple[FallbackHop, ...]
    auto_class: str
    auto_confidence: float
    trace_id: str
    placement: PlacementInfo | None = None
    """Every GPU (and host RAM) the answering model occupies, when the agent said."""
    woken: bool = False
    """Its load was a wake from sleep (host RAM), not a load from disk."""

    @property
    def load_description(self) -> str:
        if not self.cold_start:
            return ""
        how = "woken from sleep" if self.woken else "cold load"
        return f"{how} in {self.load_seconds:.1f} s"


@dataclass(frozen=True, slots=True)
class RoutedCompletion:
    completion: Completion
    route: RouteTaken


RouteListener = Callable[[RouteTaken], None]
"""Told the route once the first chunk arrives (no retry or fallback can follow then),
before that chunk is yielded: the HTTP front door sends it as headers ahead of the body."""
