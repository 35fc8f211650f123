"""The gpu-agent alone, as a real process with real llama.cpp servers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import GEMMA
from tests.integration.agent_process import AgentProcess
from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_cli.mesh import wait_serving

pytestmark = pytest.mark.integration

PINNED = {**GEMMA, "name": "gemma-pinned", "aliases": [], "pinned": True}
SPARE = {**GEMMA, "name": "gemma-spare", "aliases": []}


class Agent(AgentProcess):
    def __init__(self, root: Path, settings: Mapping[str, object] | None = None) -> None:
        """`settings`: added to the agent section of its config."""
        self.log_dir = root / "logs"
        config = root / "warmpath.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "models": [PINNED, SPARE],
                    "agent": {
                        "heartbeat_seconds": 0.5,
                        "min_residency_seconds": 0,
                        "inventory": {"simulated": True, "gpus": [{"memory": "2GiB"}]},
                        **(settings or {}),
                    },
                }
            )
        )
        super().__init__(config, root / "agent.log", self.log_dir / "models")

    def model_log(self, model: str) -> str:
        path = self.log_dir / "models" / f"{model}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def state(agent: Agent) -> gpu_agent_pb2.AgentState:
    with grpc.insecure_channel(agent.address) as channel:
        return gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(gpu_agent_pb2.GetStateRequest())


def wait_for_state(
    agent: Agent, model: str, wanted: int, timeout: float = 60
) -> gpu_agent_pb2.ModelResidency:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in state(agent).models if m.model == model]
        if found and found[0].state == wanted:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{model} never reached state {wanted}: {state(agent)}")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    started = Agent(tmp_path_factory.mktemp("agent"))
    try:
        # Generous bounds: a loaded machine may take a while to start a model server.
        wait_serving(started.address, 120)
        wait_for_state(started, "gemma-pinned", gpu_agent_pb2.RESIDENCY_STATE_READY, timeout=180)
        yield started
    finally:
        assert started.stop() == 0


def test_health_probes_never_load_or_generate(agent: Agent) -> None:
    loads_before = agent.loads()
    deadline = time.monotonic() + 3
    probes = 0
    with grpc.insecure_channel(agent.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = gpu_agent_pb2_grpc.GpuAgentStub(channel)
        while time.monotonic() < deadline:
            for service in ("", "warmpath.v1.GpuAgent", "warmpath.v1.GpuAgent/gpu/0"):
                assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == 1
            next(iter(health.Watch(health_pb2.HealthCheckRequest())))
            stub.GetState(gpu_agent_pb2.GetStateRequest())
            next(iter(stub.WatchState(gpu_agent_pb2.WatchStateRequest())))
            probes += 6
    assert probes > 50
    assert agent.loads() == loads_before
    assert {m.model for m in state(agent).models} == {"gemma-pinned"}, "probing loaded a model"
    log = agent.model_log("gemma-pinned")
    assert "GET /v1/models" in log, "readiness is probed on the metadata endpoint"
    assert "POST" not in log, "nothing was ever generated"


async def test_watch_state_streams_snapshot_changes_and_heartbeats(agent: Agent) -> None:
    async with grpc.aio.insecure_channel(agent.address) as channel:
        stub = gpu_agent_pb2_grpc.GpuAgentStub(channel)
        stream = stub.WatchState(gpu_agent_pb2.WatchStateRequest())
        first = await stream.read()
        assert first.kind == gpu_agent_pb2.STATE_EVENT_KIND_SNAPSHOT
        assert first.state.simulated
        heartbeat = await asyncio.wait_for(stream.read(), 5)
        assert heartbeat.kind == gpu_agent_pb2.STATE_EVENT_KIND_HEARTBEAT
        load = asyncio.ensure_future(
            stub.EnsureLoaded(gpu_agent_pb2.EnsureLoadedRequest(model="gemma-spare"))
        )
        descriptions = []
        while not any("gemma-spare ready" in d for d in descriptions):
            event = await asyncio.wait_for(stream.read(), 60)
            if event.kind == gpu_agent_pb2.STATE_EVENT_KIND_CHANGE:
                descriptions.append(event.description)
        assert any("gemma-spare loading" in d for d in descriptions)
        response = await load
        assert (
            response.cold_start and response.residency.state == gpu_agent_pb2.RESIDENCY_STATE_READY
        )
        assert response.residency.estimated_memory_bytes == 600 * 1024**2
        stream.cancel()


def test_a_crashed_model_server_is_reported_failed_then_reloads(agent: Agent) -> None:
    with grpc.insecure_channel(agent.address) as channel:
        stub = gpu_agent_pb2_grpc.GpuAgentStub(channel)
        stub.EnsureLoaded(gpu_agent_pb2.EnsureLoadedRequest(model="gemma-spare"))
        # A caller's check of a live server (verify) leaves it serving: no reload.
        checked = stub.EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model="gemma-spare", verify=True)
        )
        assert not checked.cold_start
    used_before = state(agent).gpus[0].memory_used_bytes
    server_pids = [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit()
        and _cmdline(int(pid)).count("gemma-spare")
        and "llama_cpp.server" in _cmdline(int(pid))
    ]
    assert len(server_pids) == 1
    os.kill(server_pids[0], signal.SIGKILL)
    failed = wait_for_state(agent, "gemma-spare", gpu_agent_pb2.RESIDENCY_STATE_FAILED, timeout=20)
    assert "exited with code -9" in failed.failure_reason
    assert state(agent).gpus[0].memory_used_bytes == used_before - 600 * 1024**2
    with grpc.insecure_channel(agent.address) as channel:
        again = gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model="gemma-spare")
        )
    assert again.cold_start and again.residency.state == gpu_agent_pb2.RESIDENCY_STATE_READY


def test_unload_refuses_a_pinned_model_unless_forced(agent: Agent) -> None:
    with grpc.insecure_channel(agent.address) as channel:
        stub = gpu_agent_pb2_grpc.GpuAgentStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Unload(gpu_agent_pb2.UnloadRequest(model="gemma-pinned"))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as unknown:
            stub.EnsureLoaded(gpu_agent_pb2.EnsureLoadedRequest(model="llama3.2:3b"))
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert stub.Unload(gpu_agent_pb2.UnloadRequest(model="gemma-spare")).unloaded


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""
