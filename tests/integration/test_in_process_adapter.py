"""A router that runs the backend-adapter in-process (`hosts[].adapter: in-process`),
in front of the real gpu-agent and the real llama.cpp server with Gemma."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import yaml

from tests.conftest import GEMMA, metric_total
from warmpath.v1 import generate_pb2, router_pb2_grpc
from warmpath_cli.mesh import LocalMesh, MeshPorts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    root = tmp_path_factory.mktemp("in-process")
    ports = MeshPorts.free()
    config = root / "warmpath.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [GEMMA],
                "router": {
                    "hosts": [
                        {
                            "name": "local",
                            "agent": ports.address("gpu-agent"),
                            "adapter": "in-process",
                        }
                    ]
                },
                "agent": {
                    "host": "local",
                    "inventory": {
                        "simulated": True,
                        "gpus": [{"name": "Test GPU", "memory": "4GiB"}],
                    },
                },
            }
        )
    )
    mesh = LocalMesh(config=config, log_dir=root / "logs", ports=ports)
    mesh.start()
    yield mesh
    codes = mesh.stop()
    assert set(codes.values()) == {0}, codes


def adapter_requests(mesh: LocalMesh, service: str) -> float:
    assert mesh.ports.metrics is not None
    return metric_total(mesh.ports.metrics[service], "warmpath_adapter_requests_total")


def test_the_router_answers_through_its_own_adapter(local_mesh: LocalMesh) -> None:
    with grpc.insecure_channel(local_mesh.ports.address("router")) as channel:
        stream = router_pb2_grpc.RouterStub(channel).Generate(
            generate_pb2.GenerateRequest(
                model="gemma",
                prompt="Q: What is the capital of France?\nA:",
                max_tokens=8,
                temperature=0,  # greedy: the same answer every run
            ),
            timeout=120,
        )
        chunks = list(stream)
    text = "".join(chunk.text for chunk in chunks)
    final = chunks[-1]
    assert "Paris" in text
    assert final.route.served_model == "gemma3-270m" and final.usage.output_tokens > 0
    assert adapter_requests(local_mesh, "router") == 1
    assert adapter_requests(local_mesh, "backend-adapter") == 0, "no hop to the adapter process"
