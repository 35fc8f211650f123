"""The fallback walk: which models a request tries after its own, in what order, how
much of the deadline each model's load must leave them, and what the caller is told
when all of them fail (see the failure rule in relay.py)."""

from __future__ import annotations

import dataclasses

from warmpath_common.config import ModelSpec
from warmpath_common.convert import ResidencyState
from warmpath_common.errors import DeadlineExceeded, ResourceExhausted, Unavailable, WarmpathError
from warmpath_common.security import Caller
from warmpath_router.cluster import ClusterView
from warmpath_router.decision import FallbackHop
from warmpath_router.registry import ModelRegistry

__all__ = [
    "FALLBACK_ON",
    "ColdLoadTooSlow",
    "exhausted",
    "fallback_chain",
    "fallback_reserve",
    "link_hops",
]


class ColdLoadTooSlow(DeadlineExceeded):
    """The model would need a load that takes longer than the request may wait."""


FALLBACK_ON = (Unavailable, ResourceExhausted, ColdLoadTooSlow)
"""Failures before the first chunk that another model may succeed at."""

# Kept back from a model's load for a fallback to answer: a warm fallback's first
# tokens, or a cold one's load on top (a default when it was never loaded).
_WARM_FALLBACK_RESERVE_SECONDS = 5.0
_UNKNOWN_LOAD_SECONDS = 10.0


def fallback_chain(
    spec: ModelSpec, registry: ModelRegistry, cluster: ClusterView, caller: Caller
) -> list[ModelSpec]:
    """The model, then the whole fallback graph below it, nearest first: its own
    fallbacks, then theirs, and so on; within each step those already warm
    somewhere first (a cold fallback adds a load to a failure), then in configured
    order; each model once; less those the caller may not use (the walk still goes
    through them: the operator's graph says what to try next)."""
    seen = {spec.name}
    walk: list[ModelSpec] = []
    step = [spec]
    while step:
        names = [name for s in step for name in s.fallbacks]
        following = []
        for name in names:
            if name not in seen:
                seen.add(name)
                following.append(registry.get(name))
        following.sort(key=lambda f: not _is_warm(f.name, cluster))
        walk.extend(following)
        step = following
    return [spec, *(f for f in walk if caller.may_use(f.name))]


def fallback_reserve(fallbacks: list[ModelSpec], cluster: ClusterView) -> float:
    """Seconds to keep back from a model's load for its fallbacks: what the quickest
    of them needs to answer (a warm one little, a cold one its last load time).

    Without it an agent waiting for room could spend the whole deadline on the
    first model, and a configured fallback would never get its turn.
    """
    if not fallbacks:
        return 0.0
    needs = []
    for spec in fallbacks:
        replicas = cluster.replicas_of(spec.name)
        if any(r.state is ResidencyState.READY for r in replicas):
            needs.append(_WARM_FALLBACK_RESERVE_SECONDS)
        else:
            loaded = max((r.load_seconds for r in replicas), default=0.0)
            needs.append(_WARM_FALLBACK_RESERVE_SECONDS + max(loaded, _UNKNOWN_LOAD_SECONDS))
    return min(needs)


def _is_warm(model: str, cluster: ClusterView) -> bool:
    return any(r.state is ResidencyState.READY for r in cluster.replicas_of(model))


def link_hops(hops: list[FallbackHop], final_model: str) -> tuple[FallbackHop, ...]:
    """Fills in each hop's destination: the next model tried."""
    if not hops:
        return ()
    targets = [hop.from_model for hop in hops[1:]] + [final_model]
    return tuple(
        dataclasses.replace(hop, to_model=to) for hop, to in zip(hops, targets, strict=True)
    )


def exhausted(last_error: WarmpathError | None, hops: list[FallbackHop]) -> WarmpathError:
    """The error the caller gets when no model in the chain answered."""
    if last_error is None:
        return Unavailable("no model in the chain could be tried")
    if len(hops) <= 1:
        return last_error
    tried = "; ".join(f"{hop.from_model}: {hop.reason}" for hop in hops)
    return type(last_error)(f"every model in the fallback chain failed ({tried})")
