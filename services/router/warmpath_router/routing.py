"""Placement: which host serves a resolved model, and why. Pure functions of the cluster view."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from warmpath_common.config import ModelSpec, OffloadPolicy
from warmpath_common.convert import PlacementInfo, ResidencyState
from warmpath_common.errors import Unavailable
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.registry import ResolvedModel

__all__ = ["Candidate", "Placement", "RouteReason", "models_fitting_nowhere", "place"]

# Lower is better. A ready replica beats one still loading, which beats a host
# that would have to start a load, which beats retrying a failed one.
_SCORE = {
    ResidencyState.READY: 0.0,
    ResidencyState.LOADING: 1.0,
    # Asleep: a wake of seconds, not a load, but not ready either.
    ResidencyState.ASLEEP: 1.5,
    None: 2.0,
    ResidencyState.FAILED: 3.0,
}


_MIB = 1024 * 1024


class RouteReason(StrEnum):
    RESIDENT = "resident"
    LOADING = "loading"
    LOAD_REQUIRED = "load_required"


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str
    host: str
    gpu_index: int
    resident: bool
    score: float
    rejected_because: str = ""
    placement: PlacementInfo | None = None
    """Where the model lives on that host (its GPUs, split or offload), when it is
    resident or loading there and its agent says."""


@dataclass(frozen=True)
class Placement:
    """Where one model would be served."""

    model: str
    host: str
    replica: Replica | None
    reason: RouteReason
    explanation: str
    expected_load_seconds: float
    explain: Callable[[], tuple[Candidate, ...]]
    """Builds the candidates weighed; only Route's reply and traces read them."""
    wake_required: bool = False
    """The model is asleep there: its agent would wake it rather than load it."""

    @functools.cached_property
    def candidates(self) -> tuple[Candidate, ...]:
        return self.explain()

    @property
    def load_required(self) -> bool:
        return self.reason is not RouteReason.RESIDENT


def place(
    resolved: ResolvedModel,
    cluster: ClusterView,
    *,
    in_flight: Mapping[tuple[str, str], int] | None = None,
    circuit_open: Callable[[tuple[str, str]], float] | None = None,
    rng: random.Random | None = None,
    exclude: frozenset[str] = frozenset(),
) -> Placement:
    """Chooses the best host for `resolved`, or raises UNAVAILABLE saying why none will do.

    The common case, a model ready somewhere, looks only at its ready replicas (a
    ready replica beats every other state); everything else scans every host.
    """
    model = resolved.spec.name
    load = in_flight or {}
    ready = []
    for order, view, replica in cluster.ready_replicas(model):
        if _rejection(view, resolved.spec, exclude):
            continue
        if circuit_open is not None and circuit_open((view.name, model)) > 0:
            continue
        queued = load.get((view.name, model), 0)
        ready.append((queued / (queued + 1), order, view.name, replica))
    if not ready:
        return _place_by_scan(resolved, cluster, load, circuit_open, rng, exclude)
    drawn = (rng or random).sample(ready, 2) if len(ready) > 2 else ready
    _, _, host, replica = min(drawn, key=lambda item: (item[0], item[1]))
    reason, explanation = _explain(model, host, replica)

    def explain() -> tuple[Candidate, ...]:
        scanned = _place_by_scan(resolved, cluster, load, circuit_open, None, exclude)
        chosen = next(c for c in scanned.candidates if c.host == host)
        others = [
            c
            if c.host != scanned.host
            else dataclasses.replace(
                c, rejected_because="not drawn, or busier (power of two choices)"
            )
            for c in scanned.candidates
            if c.host != host
        ]
        return (dataclasses.replace(chosen, rejected_because=""), *others)

    return Placement(model, host, replica, reason, explanation, 0.0, explain)


def _place_by_scan(
    resolved: ResolvedModel,
    cluster: ClusterView,
    load: Mapping[tuple[str, str], int],
    circuit_open: Callable[[tuple[str, str]], float] | None,
    rng: random.Random | None,
    exclude: frozenset[str],
) -> Placement:
    """Every host weighed: the cold path, and the explanation of any placement.

    Hosts are ranked by the state of the model there (ready, loading, absent,
    failed). Among ready replicas, load decides: two are drawn at random and
    the one with fewer requests in flight wins (power of two choices), so a
    warm replica with a queue loses to an idle warm one. A replica whose
    circuit is open is passed over, unless every viable replica's is.
    """
    model = resolved.spec.name
    viable: list[tuple[float, int, str, Replica | None]] = []
    rejected: list[Candidate] = []
    tripped: list[tuple[float, int, str, Replica | None, float]] = []
    for order, view in enumerate(cluster.hosts.values()):
        why_not = _rejection(view, resolved.spec, exclude)
        if why_not:
            rejected.append(Candidate(model, view.name, -1, False, math.inf, why_not))
            continue
        replica = view.replica(model)
        if replica is not None and replica.state is ResidencyState.UNRESPONSIVE:
            # Its agent neither serves nor reloads it until it answers or is restarted.
            why = f"model server unresponsive: {replica.problem or 'its agent says so'}"
            rejected.append(_candidate(model, view.name, replica, math.inf, why))
            continue
        state = replica.state if replica else None
        if state is ResidencyState.UNLOADING:
            state = None
        queued = load.get((view.name, model), 0)
        # The tier decides; load only orders replicas within a tier.
        score = _SCORE[state] + queued / (queued + 1)
        open_for = circuit_open((view.name, model)) if circuit_open else 0.0
        if open_for > 0:
            tripped.append((score, order, view.name, replica, open_for))
        else:
            viable.append((score, order, view.name, replica))
    if not viable and tripped:
        # Never eject the last viable replicas: try them rather than fail.
        viable = [(score, order, host, replica) for score, order, host, replica, _ in tripped]
        tripped = []
    for score, _, host, replica, open_for in tripped:
        rejected.append(
            _candidate(
                model,
                host,
                replica,
                score,
                f"circuit open for {open_for:.0f} s after repeated failures",
            )
        )
    if not viable:
        reasons = (
            "; ".join(f"{c.host}: {c.rejected_because}" for c in rejected) or "no hosts configured"
        )
        raise Unavailable(f"no host can serve {model} right now ({reasons})")
    viable.sort(key=lambda item: (item[0], item[1]))
    best_tier = [item for item in viable if math.floor(item[0]) == math.floor(viable[0][0])]
    if len(best_tier) > 2:
        drawn = (rng or random).sample(best_tier, 2)
        chosen_item = min(drawn, key=lambda item: (item[0], item[1]))
    else:
        chosen_item = best_tier[0]
    score, _, host, replica = chosen_item
    chosen = _candidate(model, host, replica, score)
    others = [
        _candidate(
            model,
            other_host,
            other,
            other_score,
            "a better-scored host was chosen"
            if math.floor(other_score) > math.floor(score)
            else "not drawn, or busier (power of two choices)",
        )
        for other_score, _, other_host, other in viable
        if other_host != host
    ]
    reason, explanation = _explain(model, host, replica)
    expected = 0.0 if reason is RouteReason.RESIDENT else _expected_load_seconds(model, cluster)
    asleep = replica is not None and replica.state is ResidencyState.ASLEEP
    if asleep and replica is not None and replica.wake_seconds > 0:
        expected = replica.wake_seconds
    candidates = (chosen, *others, *rejected)
    return Placement(
        model, host, replica, reason, explanation, expected, lambda: candidates, asleep
    )


def _candidate(
    model: str, host: str, replica: Replica | None, score: float, rejected_because: str = ""
) -> Candidate:
    ready = replica is not None and replica.state is ResidencyState.READY
    if replica is None:
        return Candidate(model, host, -1, ready, score, rejected_because)
    return Candidate(
        model, host, replica.gpu_index, ready, score, rejected_because, replica.placement
    )


def _rejection(view: HostView, spec: ModelSpec, exclude: frozenset[str]) -> str:
    """Why a host cannot take the model at all, or "" when it can."""
    if view.name in exclude:
        return "already tried for this request"
    if not view.reachable:
        return f"host unreachable: {view.problem}"
    if spec.name not in view.servable:
        return "host does not serve this model"
    return too_big_for(spec, view)


def too_big_for(spec: ModelSpec, view: HostView) -> str:
    """Why no set of the host's GPUs can hold the model, even split (layer split over
    several, or tensor_parallel) or partly offloaded to host RAM; "" when some can, or
    when the host reported no GPUs yet. The agent decides the placement itself."""
    need = int(spec.memory or 0)
    largest = view.largest_gpu_bytes
    if not need or not largest:
        return ""
    if spec.tensor_parallel > 1:
        if view.gpu_count and spec.tensor_parallel > view.gpu_count:
            return f"needs {spec.tensor_parallel} GPUs (tensor_parallel), host has {view.gpu_count}"
        share = need // spec.tensor_parallel
        if share > largest:
            return (
                f"fits no GPU set here (needs {share / _MIB:.0f} MiB on each of "
                f"{spec.tensor_parallel} GPUs, largest GPU {largest / _MIB:.0f} MiB)"
            )
        return ""
    if need <= largest or spec.effective_offload is not OffloadPolicy.NEVER:
        return ""
    together = view.total_gpu_bytes or largest
    if spec.splits_by_layer and need <= together:
        return ""
    return (
        f"fits no GPU here (needs {need / _MIB:.0f} MiB, largest GPU {largest / _MIB:.0f} MiB"
        + (f", all GPUs {together / _MIB:.0f} MiB" if spec.splits_by_layer else "")
        + ", offload never)"
    )


def _explain(model: str, host: str, replica: Replica | None) -> tuple[RouteReason, str]:
    if replica is not None and replica.state is ResidencyState.READY:
        return (
            RouteReason.RESIDENT,
            f"{model} is resident and ready on {host} GPU {replica.gpu_index}",
        )
    if replica is not None and replica.state is ResidencyState.LOADING:
        return RouteReason.LOADING, f"{model} is loading on {host}; the request would wait for it"
    if replica is not None and replica.state is ResidencyState.ASLEEP:
        last = f" (its last wake took {replica.wake_seconds:.1f} s)" if replica.wake_seconds else ""
        return (
            RouteReason.LOAD_REQUIRED,
            f"{model} is asleep in host RAM on {host}; {host} would wake it{last}",
        )
    return RouteReason.LOAD_REQUIRED, f"{model} is resident nowhere; {host} would load it"


def _expected_load_seconds(model: str, cluster: ClusterView) -> float:
    """The last measured load time of the model anywhere, 0 if never loaded."""
    times = [r.load_seconds for r in cluster.replicas_of(model) if r.load_seconds > 0]
    return max(times, default=0.0)


def models_fitting_nowhere(
    specs: Iterable[ModelSpec], cluster: ClusterView
) -> dict[str, tuple[int, int]]:
    """Models no reachable host that reported its GPUs can hold, even split or partly
    offloaded (too_big_for): name -> (needed bytes, largest GPU bytes)."""
    known = [v for v in cluster.hosts.values() if v.reachable and v.largest_gpu_bytes]
    if not known:
        return {}
    largest = max(v.largest_gpu_bytes for v in known)
    return {
        spec.name: (int(spec.memory), largest)
        for spec in specs
        if spec.memory is not None and all(too_big_for(spec, v) for v in known)
    }
