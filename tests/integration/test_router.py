"""The router's view of its agents: readiness, losing an agent, and recovering."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.conftest import mesh_config
from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc
from warmpath_cli.mesh import MeshPorts, wait_serving

pytestmark = pytest.mark.integration


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return int(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
        )


def wait_health(address: str, wanted: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if health(address) == wanted:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{address} never reported health {wanted}")


class Processes:
    def __init__(self, root: Path) -> None:
        self.ports = MeshPorts.free()
        self.config = root / "warmpath.yaml"
        self.config.write_text(yaml.safe_dump(mesh_config(self.ports)))
        self.root = root
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, service: str, module: str) -> None:
        log = (self.root / f"{service}.log").open("ab")
        self.running[service] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--config",
                str(self.config),
                "--listen",
                self.ports.address(service),
            ],
            stdout=log,
            stderr=log,
        )

    def stop(self, service: str) -> int:
        process = self.running.pop(service)
        process.send_signal(signal.SIGTERM)
        return process.wait(30)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    for service in list(started.running):
        started.stop(service)


@pytest.fixture
def lone_router(processes: Processes) -> str:
    """A router started before any agent answers: up, and NOT_SERVING. Its address."""
    router = processes.ports.address("router")
    processes.start("router", "warmpath_router")
    wait_health(router, health_pb2.HealthCheckResponse.NOT_SERVING)
    return router


def test_router_is_not_serving_until_an_agent_answers_and_recovers_after_losing_it(
    processes: Processes, lone_router: str
) -> None:
    router = lone_router
    with grpc.insecure_channel(router) as channel, pytest.raises(grpc.RpcError) as caught:
        router_pb2_grpc.RouterStub(channel).Route(
            router_pb2.RouteRequest(
                request=generate_pb2.GenerateRequest(model="gemma", prompt="hi")
            )
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "local: host unreachable" in (caught.value.details() or "")  # type: ignore[attr-defined]

    processes.start("gpu-agent", "warmpath_agent")
    wait_serving(processes.ports.address("gpu-agent"), 30)
    wait_health(router, health_pb2.HealthCheckResponse.SERVING)

    assert processes.stop("gpu-agent") == 0
    wait_health(router, health_pb2.HealthCheckResponse.NOT_SERVING)
    processes.start("gpu-agent", "warmpath_agent")
    wait_health(router, health_pb2.HealthCheckResponse.SERVING)
    with grpc.insecure_channel(router) as channel:
        decision = router_pb2_grpc.RouterStub(channel).Route(
            router_pb2.RouteRequest(
                request=generate_pb2.GenerateRequest(model="gemma", prompt="hi")
            )
        )
    assert decision.host == "local" and decision.load_required


def test_config_changes_reload_and_bad_ones_are_rejected_while_serving(
    processes: Processes, lone_router: str
) -> None:
    router = lone_router

    def aliases() -> list[str]:
        with grpc.insecure_channel(router) as channel:
            listing = router_pb2_grpc.RouterStub(channel).ListModels(router_pb2.ListModelsRequest())
        return [alias for model in listing.models for alias in model.aliases]

    good = yaml.safe_load(processes.config.read_text())
    good["models"][0]["aliases"] = [*good["models"][0]["aliases"], "reloaded-alias"]
    processes.config.write_text(yaml.safe_dump(good))
    deadline = time.monotonic() + 20
    while "reloaded-alias" not in aliases():
        assert time.monotonic() < deadline, "the change was never applied"
        time.sleep(0.2)

    bad = yaml.safe_load(processes.config.read_text())
    bad["models"][0]["fallbacks"] = [bad["models"][0]["name"]]
    processes.config.write_text(yaml.safe_dump(bad))
    log = processes.root / "router.log"
    deadline = time.monotonic() + 20
    while "config reload rejected" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the bad config was never reported"
        time.sleep(0.2)
    assert "falls back to itself" in log.read_text(errors="replace")
    assert "reloaded-alias" in aliases(), "the last good config is still served"
