"""Route says where each candidate's replica lives: its GPUs, split or offload."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA
from tests.fakes.ports import FakeAdapters, FakeAgents
from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc
from warmpath_common.config import AutoRouting, BackendKindName, ModelSpec, RouterSettings
from warmpath_common.convert import PlacementInfo, ResidencyState
from warmpath_common.generation import Endpoint
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.metrics import RouterMetrics
from warmpath_router.registry import ModelRegistry
from warmpath_router.relay import Relay
from warmpath_router.servicer import RouterServicer

SPEC = ModelSpec.model_validate({**GEMMA, "name": "big", "aliases": []})
SPLIT = PlacementInfo(
    "layer_split",
    (0, 1),
    ("GPU-a", "GPU-b"),
    layer_shares=(0.6, 0.4),
    gpu_layers=80,
    total_layers=80,
    description="layer split over GPUs 0, 1 (60%/40% of 80 layers)",
)
OFFLOAD = PlacementInfo(
    "offload",
    (0,),
    ("GPU-c",),
    gpu_layers=60,
    total_layers=80,
    host_memory_bytes=12 * 1024**3,
    expected_slowdown=3.25,
    description="20 of 80 layers offloaded to host RAM, 60 on GPU 0",
    reason="fits on no set of GPUs: 20 of 80 layers in host RAM",
)


def replica(host: str, uuid: str, placement: PlacementInfo | None) -> Replica:
    endpoint = Endpoint(BackendKindName.LLAMA_CPP, f"http://{host}", "big")
    return Replica("big", host, ResidencyState.READY, 0, uuid, 3.0, endpoint, placement=placement)


@pytest.fixture
async def router() -> AsyncIterator[router_pb2_grpc.RouterStub]:
    cluster = ClusterView()
    for name, placed in (("split", SPLIT), ("offloaded", OFFLOAD), ("old-agent", None)):
        uuid = placed.gpu_uuids[0] if placed else "GPU-z"
        cluster.update(
            HostView(
                name, True, servable=frozenset({"big"}), replicas=(replica(name, uuid, placed),)
            )
        )
    relay = Relay(
        ModelRegistry([SPEC], AutoRouting()),
        cluster,
        FakeAgents(),
        FakeAdapters(),
        RouterSettings(),
        RouterMetrics(CollectorRegistry()),
    )
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(relay, cluster), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield router_pb2_grpc.RouterStub(channel)
    await server.stop(None)


async def test_every_candidate_says_where_its_replica_lives(
    router: router_pb2_grpc.RouterStub,
) -> None:
    request = generate_pb2.GenerateRequest(model="big", prompt="Hi", max_tokens=4)
    decision = await router.Route(router_pb2.RouteRequest(request=request), timeout=10)
    by_host = {c.host: c for c in decision.candidates}
    assert set(by_host) == {"split", "offloaded", "old-agent"}
    split = by_host["split"].placement
    assert list(split.gpu_indexes) == [0, 1]
    assert list(split.gpu_uuids) == ["GPU-a", "GPU-b"]
    assert list(split.layer_shares) == pytest.approx([0.6, 0.4])
    assert split.layout == generate_pb2.PLACEMENT_LAYOUT_LAYER_SPLIT
    offloaded = by_host["offloaded"].placement
    assert offloaded.layout == generate_pb2.PLACEMENT_LAYOUT_OFFLOAD
    assert (offloaded.gpu_layers, offloaded.total_layers) == (60, 80)
    assert offloaded.expected_slowdown == pytest.approx(3.25)
    assert "host RAM" in offloaded.reason
    # An agent from before placements says nothing: the field stays unset.
    assert not by_host["old-agent"].HasField("placement")
    chosen = decision.candidates[0]
    assert chosen.host == decision.host and not chosen.rejected_because
    assert chosen.placement == decision.placement
