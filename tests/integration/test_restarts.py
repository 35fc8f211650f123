"""Processes dying and coming back: requests route around them, and nothing reloads."""

from __future__ import annotations

import asyncio
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

from tests.conftest import GEMMA, wait_until
from tests.fakes.faulty_openai import FaultyOpenAI
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_cli.mesh import free_port, wait_serving
from warmpath_common.config import BackendKindName, HostSpec
from warmpath_common.errors import Unavailable
from warmpath_common.generation import Endpoint, GenerationRequest
from warmpath_router.clients import AdapterClient, HostChannels

pytestmark = pytest.mark.integration

MODULES = {"agent": "warmpath_agent", "adapter": "warmpath_adapter", "router": "warmpath_router"}


class TwoHosts:
    """Router + two hosts (agent + adapter each) that both serve Gemma."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.addresses = {
            name: f"127.0.0.1:{free_port()}"
            for name in ("router", "agent-a", "adapter-a", "agent-b", "adapter-b")
        }
        hosts = [
            {
                "name": h,
                "agent": self.addresses[f"agent-{h}"],
                "adapter": self.addresses[f"adapter-{h}"],
            }
            for h in ("a", "b")
        ]
        self.configs = {}
        for host, ports in (("a", [42000, 42499]), ("b", [42500, 42999])):
            config = root / f"host-{host}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "models": [GEMMA],
                        "router": {"hosts": hosts},
                        "agent": {
                            "host": host,
                            "inventory": {"simulated": True, "gpus": [{"memory": "4GiB"}]},
                            # Separate port ranges: both agents start servers on this machine.
                            "process": {"port_range": ports},
                        },
                    }
                )
            )
            self.configs[host] = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        role, _, host = name.partition("-")
        config = self.configs[host or "a"]
        log = (self.root / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                MODULES[role],
                "--config",
                str(config),
                "--listen",
                self.addresses[name],
            ],
            stdout=log,
            stderr=log,
        )
        if role != "router":
            wait_serving(self.addresses[name], 60)

    def kill(self, name: str, how: signal.Signals = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.send_signal(how)
        process.wait(30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[TwoHosts]:
    hosts = TwoHosts(tmp_path)
    try:
        for name in ("agent-a", "adapter-a", "agent-b", "adapter-b", "router"):
            hosts.start(name)
        wait_serving(hosts.addresses["router"], 60)
        yield hosts
    finally:
        hosts.stop_all()


def generate(hosts: TwoHosts) -> generate_pb2.GenerateResponse:
    with grpc.insecure_channel(hosts.addresses["router"]) as channel:
        request = generate_pb2.GenerateRequest(model="gemma", prompt="The sky is", max_tokens=2)
        return list(router_pb2_grpc.RouterStub(channel).Generate(request, timeout=120))[-1]


def load_on(hosts: TwoHosts, host: str) -> None:
    with grpc.insecure_channel(hosts.addresses[f"agent-{host}"]) as channel:
        gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model="gemma3-270m"), timeout=120
        )


def ready_replicas(hosts: TwoHosts) -> set[str]:
    with grpc.insecure_channel(hosts.addresses["router"]) as channel:
        listing = router_pb2_grpc.RouterStub(channel).ListModels(router_pb2.ListModelsRequest())
    return {r.host for m in listing.models for r in m.replicas if r.state == "ready"}


def test_a_killed_adapter_is_routed_around_before_the_first_token(cluster: TwoHosts) -> None:
    load_on(cluster, "a")
    load_on(cluster, "b")
    wait_until(lambda: ready_replicas(cluster) == {"a", "b"})
    cluster.kill("adapter-a")
    served = {generate(cluster).route.host for _ in range(6)}
    assert served == {"b"}, "every request was answered, by the replica whose adapter lives"


def test_a_restarted_router_rebuilds_its_view_from_the_agents(cluster: TwoHosts) -> None:
    load_on(cluster, "a")
    wait_until(lambda: "a" in ready_replicas(cluster))
    cluster.kill("router")
    started = time.monotonic()
    cluster.start("router")
    wait_serving(cluster.addresses["router"], 60)
    wait_until(lambda: "a" in ready_replicas(cluster))
    rebuilt_in = time.monotonic() - started
    final = generate(cluster)
    assert not final.route.cold_start, "the restarted router found the resident model"
    print(f"router restart to a rebuilt view: {rebuilt_in:.1f} s")
    with grpc.insecure_channel(cluster.addresses["router"]) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
    assert status == health_pb2.HealthCheckResponse.SERVING


async def test_an_adapter_killed_mid_call_may_have_sent_one_never_reached_has_not(
    tmp_path: Path,
) -> None:
    """The router's client tells the two apart: only the second may go to another replica."""
    hosts = TwoHosts(tmp_path)
    address = hosts.addresses["adapter-a"]
    channels = HostChannels((HostSpec(name="a", agent=address, adapter=address),))
    adapters = AdapterClient(channels)

    async def generate_through_adapter(url: str) -> None:
        request = GenerationRequest(model="hang", prompt="hi", max_tokens=2)
        async for _ in adapters.generate(
            "a", Endpoint(BackendKindName.VLLM, url, "hang"), request, 30
        ):
            pass

    with FaultyOpenAI() as backend:
        # Off the loop: start() waits for the adapter with a loop of its own.
        await asyncio.to_thread(hosts.start, "adapter-a")
        try:
            call = asyncio.ensure_future(generate_through_adapter(backend.url))
            async with asyncio.timeout(30):
                while "hang" not in backend.requests_seen:
                    await asyncio.sleep(0.05)
            hosts.kill("adapter-a")  # the model server has the request: it may be generating
            with pytest.raises(Unavailable) as mid_call:
                await call
            assert not mid_call.value.not_sent, mid_call.value.message
            with pytest.raises(Unavailable) as refused:
                await generate_through_adapter(backend.url)
            assert refused.value.not_sent, refused.value.message
            assert backend.requests_seen == ["hang"], "the second call reached no model server"
        finally:
            hosts.stop_all()
            await channels.close()
