"""Gemma on simulated GPUs too small for it: split over two, and partly offloaded.

The real llama.cpp server (a CPU build here) gets the split and offload flags and
still answers; every report (agent state, Route, the last Generate chunk and
ListModels) says where the model lives. With `memory: 600MiB`, Gemma's GGUF gives
18 layers of about 6 MiB and about 495 MiB that every GPU holding layers needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import yaml

from tests.integration.conftest import mesh_config
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_agent.child_record import ChildRecord
from warmpath_cli.mesh import LocalMesh, MeshPorts

pytestmark = pytest.mark.integration

SPLIT = generate_pb2.PLACEMENT_LAYOUT_LAYER_SPLIT
OFFLOAD = generate_pb2.PLACEMENT_LAYOUT_OFFLOAD


@contextmanager
def small_gpus_mesh(root: Path, gpu_mib: int) -> Iterator[LocalMesh]:
    ports = MeshPorts.free()
    config = mesh_config(ports)
    config["agent"] = {
        "host": "local",
        # The others' layers are unknown (no file): they fit these GPUs nowhere.
        "models": ["gemma3-270m"],
        "inventory": {
            "simulated": True,
            "gpus": [{"memory": f"{gpu_mib}MiB"}, {"memory": f"{gpu_mib}MiB"}],
            "host_memory": "8GiB",
        },
    }
    path = root / "warmpath.yaml"
    path.write_text(yaml.safe_dump(config))
    mesh = LocalMesh(config=path, log_dir=root / "logs", ports=ports)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


def ask(mesh: LocalMesh) -> tuple[router_pb2.RouteDecision, generate_pb2.RouteTaken]:
    with grpc.insecure_channel(mesh.ports.address("router")) as channel:
        router = router_pb2_grpc.RouterStub(channel)
        request = generate_pb2.GenerateRequest(model="gemma3-270m", prompt="Hi", max_tokens=4)
        chunks = list(router.Generate(request, timeout=300))
        decision = router.Route(router_pb2.RouteRequest(request=request), timeout=30)
        models = router.ListModels(router_pb2.ListModelsRequest(), timeout=30)
    (gemma,) = [m for m in models.models if m.name == "gemma3-270m"]
    (replica,) = gemma.replicas
    assert replica.placement == chunks[-1].route.placement, "ListModels says the same"
    return decision, chunks[-1].route


def agent_residency(mesh: LocalMesh) -> gpu_agent_pb2.ModelResidency:
    with grpc.insecure_channel(mesh.ports.address("gpu-agent")) as channel:
        state = gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(
            gpu_agent_pb2.GetStateRequest(), timeout=30
        )
    (gemma,) = [m for m in state.models if m.model == "gemma3-270m"]
    return gemma


def server_command(mesh: LocalMesh) -> tuple[str, ...]:
    records = (mesh.log_dir / "models" / "state").glob("*.json")
    (record,) = [ChildRecord.from_json(path.read_text()) for path in records]
    assert record.is_running()
    assert record.gpu_uuid.count(",") == 1, "the gang's two GPUs"
    return record.command


def test_gemma_split_over_two_simulated_gpus_answers_and_says_so(tmp_path: Path) -> None:
    with small_gpus_mesh(tmp_path, gpu_mib=560) as mesh:
        decision, route = ask(mesh)
        assert route.placement.layout == SPLIT
        assert list(route.placement.gpu_indexes) == [0, 1]
        assert len(route.placement.gpu_uuids) == 2
        assert route.gpu_index == 0 and route.gpu_uuid == route.placement.gpu_uuids[0]
        assert sum(route.placement.layer_shares) == pytest.approx(1.0, abs=1e-4)
        assert decision.placement == route.placement
        assert decision.candidates[0].placement == route.placement, "Route's candidate too"
        assert agent_residency(mesh).placement == route.placement
        command = server_command(mesh)
        assert command[command.index("--split_mode") + 1] == "1"
        assert "--tensor_split" in command


def test_gemma_partly_offloaded_answers_and_says_how_much(tmp_path: Path) -> None:
    with small_gpus_mesh(tmp_path, gpu_mib=520) as mesh:
        decision, route = ask(mesh)
        placement = route.placement
        assert placement.layout == OFFLOAD
        assert 0 < placement.gpu_layers < placement.total_layers == 18
        assert placement.host_memory_bytes > 0
        assert placement.expected_slowdown > 1
        assert "offloaded to host RAM" in placement.description
        assert decision.placement == placement
        assert decision.candidates[0].placement == placement, "Route's candidate too"
        command = server_command(mesh)
        assert command[command.index("--n_gpu_layers") + 1] == str(placement.gpu_layers)
