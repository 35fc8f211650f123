"""A crashed gpu-agent's llama.cpp servers keep serving, and the next agent adopts them.

The real agent, adapter and router processes and the real llama.cpp server with
the packaged Gemma: the model is loaded, the agent is SIGKILLed, a new agent on
the same address and log directory finds the server through its record, serves
the model as ready without loading it, and a graceful stop then takes the
server down with it.
"""

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

from tests.conftest import GEMMA, metric_total, wait_until
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_agent.child_record import ChildRecord
from warmpath_agent.processes import process_start_time, signal_process
from warmpath_cli.mesh import free_port, wait_serving

pytestmark = pytest.mark.integration

MODULES = {"agent": "warmpath_agent", "adapter": "warmpath_adapter", "router": "warmpath_router"}
READY = gpu_agent_pb2.RESIDENCY_STATE_READY
MODEL = str(GEMMA["name"])


class Host:
    """Router, adapter and agent for one host; the agent can be killed and restarted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.addresses = {name: f"127.0.0.1:{free_port()}" for name in MODULES}
        self.metrics_port = free_port()
        self.model_logs = root / "logs" / "models"
        low = 43000 + free_port() % 900
        self.config = root / "warmpath.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "models": [GEMMA],
                    "router": {
                        "hosts": [
                            {
                                "name": "local",
                                "agent": self.addresses["agent"],
                                "adapter": self.addresses["adapter"],
                            }
                        ]
                    },
                    "agent": {
                        "host": "local",
                        "heartbeat_seconds": 0.5,
                        "inventory": {"simulated": True, "gpus": [{"memory": "4GiB"}]},
                        "process": {"port_range": [low, low + 99]},
                    },
                }
            )
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str) -> None:
        args = [sys.executable, "-m", MODULES[role], "--config", str(self.config)]
        args += ["--listen", self.addresses[role]]
        if role == "agent":
            args += ["--log-dir", str(self.model_logs)]
            args += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        log = (self.root / f"{role}.log").open("ab")
        self.processes[role] = subprocess.Popen(
            args, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        wait_serving(self.addresses[role], 120)

    def signal(self, role: str, how: signal.Signals) -> int:
        process = self.processes.pop(role)
        process.send_signal(how)
        return process.wait(60)

    def stop_all(self) -> None:
        for role in ("router", "adapter", "agent"):
            if role in self.processes:
                self.signal(role, signal.SIGTERM)

    def records(self) -> list[ChildRecord]:
        state_dir = self.model_logs / "state"
        return [ChildRecord.from_json(p.read_text()) for p in sorted(state_dir.glob("*.json"))]

    def loads(self) -> float:
        return metric_total(self.metrics_port, "warmpath_agent_loads_total")

    def residency(self) -> gpu_agent_pb2.ModelResidency | None:
        with grpc.insecure_channel(self.addresses["agent"]) as channel:
            state = gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(
                gpu_agent_pb2.GetStateRequest(), timeout=10
            )
        found = [m for m in state.models if m.model == MODEL]
        return found[0] if found else None


def ready_in_router(host: Host) -> bool:
    with grpc.insecure_channel(host.addresses["router"]) as channel:
        listing = router_pb2_grpc.RouterStub(channel).ListModels(
            router_pb2.ListModelsRequest(), timeout=10
        )
    return any(r.state == "ready" for m in listing.models for r in m.replicas)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    started = Host(tmp_path)
    try:
        for role in ("agent", "adapter", "router"):
            started.start(role)
        yield started
    finally:
        for process in started.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(30)
        # Whatever the agents did: no llama.cpp server outlives the test.
        for record in started.records() if (started.model_logs / "state").is_dir() else ():
            signal_process(record.pid, record.start_time, signal.SIGKILL)


def test_a_restarted_agent_adopts_the_running_server_and_a_graceful_stop_ends_it(
    host: Host,
) -> None:
    with grpc.insecure_channel(host.addresses["agent"]) as channel:
        loaded = gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model=MODEL), timeout=180
        )
    assert loaded.cold_start and loaded.residency.state == READY
    assert host.loads() == 1
    [record] = host.records()
    assert record.model == MODEL
    assert loaded.residency.endpoint.base_url == record.base_url
    assert record.is_running()

    assert host.signal("agent", signal.SIGKILL) == -signal.SIGKILL
    time.sleep(1)
    assert record.is_running(), "the server outlived the crashed agent"

    host.start("agent")
    adopted = host.residency()
    assert adopted is not None and adopted.state == READY, "ready at once, not loading"
    assert adopted.endpoint.base_url == record.base_url
    assert host.loads() == 0, "adopted, not loaded again"
    assert host.records() == [record], "the same server: pid and start time unchanged"
    assert "adopted the running llama.cpp server" in (host.root / "agent.log").read_text()
    assert process_start_time(record.pid) == record.start_time

    wait_until(lambda: ready_in_router(host), timeout=60)
    with grpc.insecure_channel(host.addresses["router"]) as channel:
        request = generate_pb2.GenerateRequest(model="gemma", prompt="The sky is", max_tokens=4)
        chunks = list(router_pb2_grpc.RouterStub(channel).Generate(request, timeout=120))
    final = chunks[-1]
    assert not final.route.cold_start
    assert "".join(chunk.text for chunk in chunks).strip()
    assert host.loads() == 0
    assert host.records() == [record]

    assert host.signal("agent", signal.SIGTERM) == 0
    wait_until(lambda: process_start_time(record.pid) != record.start_time, timeout=30)
    assert host.records() == [], "a graceful stop stops the server and drops its record"
