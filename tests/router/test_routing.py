from __future__ import annotations

import pytest

from tests.conftest import GEMMA
from warmpath_common.config import AutoRouting, ModelSpec
from warmpath_common.errors import Unavailable
from warmpath_router.cluster import ClusterView, HostView, Replica, ReplicaState
from warmpath_router.registry import ModelRegistry
from warmpath_router.routing import RouteReason, place

SPEC = ModelSpec.model_validate(GEMMA)
RESOLVED = ModelRegistry([SPEC], AutoRouting()).resolve("gemma3-270m")


def host(name: str, state: ReplicaState | None = None, reachable: bool = True) -> HostView:
    replicas = () if state is None else (Replica(SPEC.name, name, state, 0, "SIM", 3.0, None),)
    return HostView(name, reachable=reachable, servable=frozenset({SPEC.name}), replicas=replicas)


def cluster(*views: HostView) -> ClusterView:
    view = ClusterView()
    for item in views:
        view.update(item)
    return view


def test_resident_replica_wins_over_load() -> None:
    placement = place(RESOLVED, cluster(host("a"), host("b", ReplicaState.READY)))
    assert placement.host == "b"
    assert placement.reason is RouteReason.RESIDENT
    assert not placement.load_required


def test_load_required_when_resident_nowhere_and_expected_time_is_reported() -> None:
    placement = place(RESOLVED, cluster(host("a"), host("b", ReplicaState.FAILED)))
    assert placement.host == "a"
    assert placement.reason is RouteReason.LOAD_REQUIRED
    assert placement.expected_load_seconds == 3.0


def test_unreachable_hosts_are_candidates_with_reasons() -> None:
    placement = place(RESOLVED, cluster(host("down", reachable=False), host("up")))
    assert placement.host == "up"
    rejected = {c.host: c.rejected_because for c in placement.candidates}
    assert rejected["down"].startswith("host unreachable")


def test_no_host_at_all_is_unavailable_with_reasons() -> None:
    with pytest.raises(Unavailable, match="down: host unreachable"):
        place(RESOLVED, cluster(host("down", reachable=False)))
