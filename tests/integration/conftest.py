"""A real mesh: router, gpu-agent and backend-adapter processes on loopback, with the
real llama.cpp server serving the real Gemma 3 270M GGUF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import grpc
import pytest
import yaml

from tests.conftest import GEMMA
from warmpath_cli.mesh import LocalMesh, MeshPorts, free_port

# Never loaded by any test: requests for it must be refused before backend work.
UNTOUCHED = {**GEMMA, "name": "gemma-untouched", "aliases": ["untouched"]}
# Its weights do not exist, so its load fails and it falls back to Gemma.
BROKEN = {
    **GEMMA,
    "name": "broken-model",
    "aliases": [],
    "source": {"path": "/nonexistent/broken.gguf"},
    "fallbacks": ["gemma3-270m"],
}
# Fits no GPU of the host, so the host's agent leaves it out (agent.models: an agent
# refuses to start with a model that fits nowhere on its host). Its fallback is BROKEN,
# whose own fallback is Gemma: a chain to walk.
HUGE = {
    **GEMMA,
    "name": "huge-model",
    "aliases": [],
    "memory": "64GiB",
    "fallbacks": ["broken-model"],
}


def mesh_config(ports: MeshPorts) -> dict[str, object]:
    return {
        "models": [GEMMA, UNTOUCHED, BROKEN, HUGE],
        "router": {
            "hosts": [
                {
                    "name": "local",
                    "agent": ports.address("gpu-agent"),
                    "adapter": ports.address("backend-adapter"),
                }
            ],
            "auto": {"default_model": "gemma3-270m"},
        },
        "agent": {
            "host": "local",
            "models": [GEMMA["name"], UNTOUCHED["name"], BROKEN["name"]],
            "inventory": {"simulated": True, "gpus": [{"name": "Test GPU", "memory": "4GiB"}]},
        },
    }


def standard_mesh(root: Path, extra_env: Mapping[str, str] | None = None) -> LocalMesh:
    """The mesh of `mesh_config` on free ports, its config and logs under `root`, not
    started yet; `extra_env` goes to every service."""
    ports = MeshPorts.free()
    config = root / "warmpath.yaml"
    config.write_text(yaml.safe_dump(mesh_config(ports)))
    return LocalMesh(config=config, log_dir=root / "logs", ports=ports, extra_env=extra_env or {})


def dead_collector_env(**settings: str) -> dict[str, str]:
    """OpenTelemetry export to a port nothing listens on, giving up after 1 s; `settings`
    adds to it or overrides it."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        **settings,
    }


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    started = standard_mesh(tmp_path_factory.mktemp("mesh"))
    started.start()
    yield started
    codes = started.stop()
    assert codes == {"router": 0, "backend-adapter": 0, "gpu-agent": 0}, codes


@pytest.fixture
async def router_channel(mesh: LocalMesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(mesh.ports.address("router")) as channel:
        yield channel


@pytest.fixture
async def agent_channel(mesh: LocalMesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(mesh.ports.address("gpu-agent")) as channel:
        yield channel


def llama_completions(mesh: LocalMesh, since: int = 0) -> tuple[list[str], int]:
    """Gemma's llama.cpp server logs each completion it finished ("eval time = ... / N
    runs"): the output token counts of those logged after byte `since`, and the log's
    length now. llama.cpp serves one request at a time, so a request a client cancelled
    must have stopped there for the next to run, and its statistics never appear."""
    log = (mesh.log_dir / "models" / "gemma3-270m.log").read_text(errors="replace")
    return re.findall(r"eval time = .*?/\s+(\d+) runs", log[since:]), len(log)


@pytest.fixture
def config_path(mesh: LocalMesh) -> Path:
    assert mesh.config is not None
    return mesh.config
