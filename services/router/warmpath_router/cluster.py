"""The router's view of every host, fed by each gpu-agent's WatchState stream."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from warmpath_common.convert import PlacementInfo, ResidencyState
from warmpath_common.generation import Endpoint

__all__ = ["ClusterView", "HostView", "Replica"]


@dataclass(frozen=True, slots=True)
class Replica:
    """A model resident (or loading) on one host."""

    model: str
    host: str
    state: ResidencyState
    gpu_index: int
    gpu_uuid: str
    load_seconds: float
    endpoint: Endpoint | None
    problem: str = ""
    """Why it failed or is unresponsive, as its agent says."""
    placement: PlacementInfo | None = None
    """Every GPU (and host RAM) it occupies there; None from an agent that did not say."""
    wake_seconds: float = 0.0
    """Its last wake from sleep there (0: never woken)."""


@dataclass(frozen=True, slots=True)
class HostView:
    """The last state a host's agent reported."""

    name: str
    reachable: bool
    simulated: bool = False
    servable: frozenset[str] = frozenset()
    replicas: tuple[Replica, ...] = ()
    problem: str = ""
    largest_gpu_bytes: int = 0
    """Total memory of the host's largest healthy GPU (0: unknown)."""
    total_gpu_bytes: int = 0
    """Total memory of all its healthy GPUs together (0: unknown)."""
    gpu_count: int = 0
    """Its healthy GPUs (0: unknown)."""

    def replica(self, model: str) -> Replica | None:
        return next((r for r in self.replicas if r.model == model), None)


@dataclass
class ClusterView:
    """Latest view of each configured host; hosts never heard from are unreachable."""

    hosts: dict[str, HostView] = field(default_factory=dict)
    _ready: dict[str, list[tuple[int, HostView, Replica]]] | None = field(
        default=None, init=False, repr=False
    )

    @classmethod
    def of(cls, host_names: Iterable[str]) -> ClusterView:
        return cls(
            {
                name: HostView(name, reachable=False, problem="not yet connected")
                for name in host_names
            }
        )

    def update(self, view: HostView) -> None:
        self.hosts[view.name] = view
        self._ready = None

    def ready_replicas(self, model: str) -> list[tuple[int, HostView, Replica]]:
        """(host order, host, replica) for each ready replica of `model` on a reachable
        host that serves it. Indexed once per change of the view, not per request."""
        if self._ready is None:
            index: dict[str, list[tuple[int, HostView, Replica]]] = {}
            for order, view in enumerate(self.hosts.values()):
                if not view.reachable:
                    continue
                for replica in view.replicas:
                    if replica.state is ResidencyState.READY and replica.model in view.servable:
                        index.setdefault(replica.model, []).append((order, view, replica))
            self._ready = index
        return self._ready.get(model, [])

    def mark_unreachable(self, host: str, problem: str) -> None:
        previous = self.hosts.get(host)
        self._ready = None
        self.hosts[host] = HostView(
            host,
            reachable=False,
            simulated=previous.simulated if previous else False,
            servable=previous.servable if previous else frozenset(),
            problem=problem,
        )

    def replicas_of(self, model: str) -> list[Replica]:
        return [
            replica
            for view in self.hosts.values()
            if view.reachable
            for replica in view.replicas
            if replica.model == model
        ]
