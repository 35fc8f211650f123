"""The gpu-agent notices a hung llama.cpp server, and never a busy one.

A real agent process with the real llama.cpp server and the packaged Gemma. A
server stopped with SIGSTOP (alive, its port open, answering nothing) is reported
unresponsive, ready again once continued, and stopped and marked failed when it
stays silent past the restart grace. A server streaming a long generation stays
ready all along. In a whole mesh, the router then refuses the hung replica at
once, saying why, instead of waiting out the deadline. Every test continues and
kills what it stopped, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from tests.conftest import metric_total, wait_until
from tests.integration.conftest import mesh_config
from tests.integration.test_agent import PINNED, Agent, state, wait_for_state
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_agent.child_record import ChildRecord
from warmpath_agent.processes import process_start_time
from warmpath_cli.mesh import LocalMesh, MeshPorts, wait_serving

pytestmark = pytest.mark.integration

MODEL = str(PINNED["name"])
READY = gpu_agent_pb2.RESIDENCY_STATE_READY
UNRESPONSIVE = gpu_agent_pb2.RESIDENCY_STATE_UNRESPONSIVE
FAILED = gpu_agent_pb2.RESIDENCY_STATE_FAILED
PROBES = {
    "period_seconds": 0.5,
    "timeout_seconds": 1.0,
    "failures_before_unresponsive": 3,
    "restart_after_seconds": 20.0,
}
LONG_STORY = "Write a very long story about a lighthouse keeper, at least 2000 words."


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    started = Agent(tmp_path_factory.mktemp("hung"), {"server_probe": PROBES})
    try:
        wait_serving(started.address, 120)
        wait_for_state(started, MODEL, READY, timeout=180)
        yield started
    finally:
        assert started.stop() == 0


@pytest.fixture
def server(agent: Agent) -> Iterator[ChildRecord]:
    """The model's ready llama.cpp server; continued afterwards if a test stopped it."""
    wait_for_state(agent, MODEL, READY, timeout=180)
    with continued_afterwards(agent.log_dir / "models") as record:
        yield record


@contextlib.contextmanager
def continued_afterwards(model_logs: Path) -> Iterator[ChildRecord]:
    """The record of the one llama.cpp server an agent with these model logs runs; the
    server is sent SIGCONT at the end, whatever the test did to it."""
    (record,) = [ChildRecord.from_json(p.read_text()) for p in (model_logs / "state").glob("*")]
    try:
        yield record
    finally:
        if process_start_time(record.pid) == record.start_time:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGCONT)


def counted(agent: Agent, name: str) -> float:
    return metric_total(agent.metrics_port, name)


def changes_until(agent: Agent, wanted: str, opened: threading.Event) -> list[tuple[float, str]]:
    """WatchState change descriptions with when each arrived (monotonic), read until
    one contains `wanted`; `opened` is set once the stream's snapshot has arrived."""
    seen = []
    with grpc.insecure_channel(agent.address) as channel:
        stream = gpu_agent_pb2_grpc.GpuAgentStub(channel).WatchState(
            gpu_agent_pb2.WatchStateRequest(), timeout=120
        )
        for event in stream:
            opened.set()
            if event.kind == gpu_agent_pb2.STATE_EVENT_KIND_CHANGE:
                seen.append((time.monotonic(), event.description))
                if wanted in event.description:
                    stream.cancel()
                    return seen
    raise AssertionError(f"no change mentioned {wanted!r}: {seen}")


def stop_when_watched(agent: Agent, pid: int, wanted: str) -> tuple[float, str]:
    """SIGSTOPs `pid` once a WatchState stream is open, and returns the first change that
    mentions `wanted`, with the seconds from the signal to it."""
    changes: list[tuple[float, str]] = []
    opened = threading.Event()
    watcher = threading.Thread(
        target=lambda: changes.extend(changes_until(agent, wanted, opened)), daemon=True
    )
    watcher.start()
    try:
        assert opened.wait(60), "WatchState never answered"
        stopped_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
    finally:
        watcher.join(120)
    found = [(at - stopped_at, change) for at, change in changes if wanted in change]
    assert found, f"no change mentioned {wanted!r}: {changes}"
    return found[0]


def test_a_stopped_server_is_unresponsive_then_ready_again_once_continued(
    agent: Agent, server: ChildRecord
) -> None:
    loads = agent.loads()
    before = counted(agent, "warmpath_agent_unresponsive_servers_total")
    detected, change = stop_when_watched(agent, server.pid, f"{MODEL} unresponsive")
    assert change.startswith(f"{MODEL} unresponsive: 3 readiness probes in a row failed")
    hung = wait_for_state(agent, MODEL, UNRESPONSIVE, timeout=5)
    assert "no answer to GET" in hung.failure_reason and "/docs within 1 s" in hung.failure_reason
    assert counted(agent, "warmpath_agent_unresponsive_servers_total") == before + 1
    with grpc.insecure_channel(agent.address) as channel, pytest.raises(grpc.RpcError) as refused:
        gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model=MODEL), timeout=30
        )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    continued_at = time.monotonic()
    os.kill(server.pid, signal.SIGCONT)
    wait_for_state(agent, MODEL, READY, timeout=15)
    print(
        f"\nSIGSTOP -> unresponsive on WatchState: {detected:.1f} s; "
        f"SIGCONT -> ready in GetState: {time.monotonic() - continued_at:.1f} s"
    )
    assert process_start_time(server.pid) == server.start_time, "the same server, not restarted"
    assert agent.loads() == loads


def test_a_server_still_stopped_after_the_grace_is_killed_failed_and_loaded_again(
    agent: Agent, server: ChildRecord
) -> None:
    restarts = counted(agent, "warmpath_agent_hung_server_restarts_total")
    stopped_at = time.monotonic()
    stop_when_watched(agent, server.pid, f"{MODEL} unresponsive")
    failed = wait_for_state(agent, MODEL, FAILED, timeout=PROBES["restart_after_seconds"] + 60)
    failed_after = time.monotonic() - stopped_at
    assert failed.failure_reason.startswith("unresponsive: no answer to its readiness probes")
    assert failed.failure_reason.endswith("stopped, the next request loads it again")
    wait_until(lambda: process_start_time(server.pid) != server.start_time, 30)
    assert counted(agent, "warmpath_agent_hung_server_restarts_total") == restarts + 1
    with grpc.insecure_channel(agent.address) as channel:
        again = gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model=MODEL), timeout=180
        )
    assert again.cold_start and again.residency.state == READY
    print(
        f"\nSIGSTOP -> failed and killed: {failed_after:.1f} s (restart grace "
        f"{PROBES['restart_after_seconds']:g} s); reload: {again.load_seconds:.1f} s"
    )


def test_a_server_busy_with_a_long_generation_stays_ready(
    agent: Agent, server: ChildRecord
) -> None:
    before = counted(agent, "warmpath_agent_unresponsive_servers_total")
    probes_before = agent.model_log(MODEL).count("GET /docs")
    chunks: list[str] = []

    def generate() -> None:
        with httpx.stream(
            "POST",
            f"{server.base_url}/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": LONG_STORY}],
                "max_tokens": 600,
                "temperature": 0.0,
                "stream": True,
            },
            timeout=600,
        ) as response:
            chunks.extend(line for line in response.iter_lines() if line.startswith("data: {"))

    generation = threading.Thread(target=generate)
    generation.start()
    states = set()
    try:
        while generation.is_alive():
            states |= {m.state for m in state(agent).models if m.model == MODEL}
            generation.join(0.2)
    finally:
        generation.join(600)
    assert states == {READY}
    assert len(chunks) > 100, "a long generation streamed"
    # Probes kept coming and kept being answered while it streamed.
    assert agent.model_log(MODEL).count("GET /docs") >= probes_before + 3
    assert counted(agent, "warmpath_agent_unresponsive_servers_total") == before
    print(
        f"\n{len(chunks)} chunks streamed; readiness probes answered meanwhile: "
        f"{agent.model_log(MODEL).count('GET /docs') - probes_before}, all READY"
    )


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    """Router, adapter and agent (fast probes) for one host, with Gemma."""
    ports = MeshPorts.free()
    document = mesh_config(ports)
    agent_section = document["agent"]
    assert isinstance(agent_section, dict)
    agent_section["server_probe"] = PROBES
    config = tmp_path / "warmpath.yaml"
    config.write_text(yaml.safe_dump(document))
    started = LocalMesh(config=config, log_dir=tmp_path / "logs", ports=ports)
    started.start(timeout_seconds=120)
    try:
        yield started
    finally:
        codes = started.stop()
    assert codes == {"router": 0, "backend-adapter": 0, "gpu-agent": 0}, codes


def test_the_router_refuses_a_hung_replica_at_once_and_says_why(mesh: LocalMesh) -> None:
    request = generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=4)
    with grpc.insecure_channel(mesh.ports.address("router")) as channel:
        router = router_pb2_grpc.RouterStub(channel)
        assert list(router.Generate(request, timeout=180)), "loaded and answered"
        with continued_afterwards(mesh.log_dir / "models") as server:
            stopped_at = time.monotonic()
            os.kill(server.pid, signal.SIGSTOP)

            def refused() -> bool:
                try:
                    router.Route(router_pb2.RouteRequest(request=request), timeout=10)
                except grpc.RpcError as error:
                    return "local: model server unresponsive" in (error.details() or "")
                return False

            wait_until(refused, 60)
            detected = time.monotonic() - stopped_at
            asked_at = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                list(router.Generate(request, timeout=20))
            answered = time.monotonic() - asked_at
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            details = caught.value.details() or ""
            assert "local: model server unresponsive: 3 readiness probes" in details
            os.kill(server.pid, signal.SIGCONT)
        wait_until(lambda: not refused(), 30)
        assert list(router.Generate(request, timeout=60)), "served again once it answers"
    print(  # figures for the issue note, shown with -s
        f"\nrouter: SIGSTOP -> Route refuses the replica: {detected:.1f} s; "
        f"a Generate with a 20 s deadline then ends UNAVAILABLE in {answered * 1000:.0f} ms"
    )
