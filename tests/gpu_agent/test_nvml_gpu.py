"""The NVML adapter and the agent's footprint measurement against a real NVIDIA GPU.

Skipped where there is none. The "model servers" here are real processes that
allocate GPU memory with torch (no model weights travel to a GPU host for a
test): what is checked is what the agent reads through NVML, not inference.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA, nvml_or_skip
from tests.gpu_agent.process_tree import server_with_worker
from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_agent.drivers import GpuPlacement, RunningModel
from warmpath_agent.inventory import GpuReading, MemoryBook
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.nvml import NvmlInventory
from warmpath_agent.residency import ResidencyManager
from warmpath_cli.mesh import free_port, wait_serving
from warmpath_common.config import ModelSpec
from warmpath_common.errors import ResourceExhausted

pynvml = nvml_or_skip()

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]
MIB = 2**20
GIB = 2**30
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# Allocates the given MiB on the GPU CUDA_VISIBLE_DEVICES names, says so, and holds it.
HOLDER = """
import sys, time, torch
block = torch.empty(int(sys.argv[1]) * 2**20, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("ready", flush=True)
time.sleep(600)
"""


def listed(reading: GpuReading) -> dict[int, int]:
    return {p.pid: p.used_memory_bytes for p in reading.processes}


async def test_inventory_reads_every_gpu() -> None:
    readings = await NvmlInventory(pynvml).read()
    assert len(readings) == pynvml.nvmlDeviceGetCount()
    for gpu in readings:
        print(f"[gpu test] {gpu}")
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu.index)
        try:
            print(f"[gpu test] MIG mode [current, pending]: {pynvml.nvmlDeviceGetMigMode(handle)}")
        except pynvml.NVMLError as error:
            print(f"[gpu test] MIG mode: {error}")
        assert gpu.healthy, gpu.unhealthy_reason
        assert gpu.uuid.startswith("GPU-") and gpu.name
        assert gpu.memory_total_bytes > 0
        assert gpu.memory_used_bytes + gpu.memory_free_bytes <= gpu.memory_total_bytes


def test_the_agent_process_reports_the_real_gpus_and_each_ones_health(tmp_path: Path) -> None:
    config = tmp_path / "warmpath.yaml"
    config.write_text(yaml.safe_dump({"models": [GEMMA], "agent": {"heartbeat_seconds": 1}}))
    address = f"127.0.0.1:{free_port()}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "warmpath_agent", "--config", str(config), "--listen", address]
    )
    try:
        wait_serving(address, 60)
        with grpc.insecure_channel(address) as channel:
            state = gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(
                gpu_agent_pb2.GetStateRequest()
            )
            # Watch: GPU 0's name appears with the first reading, just after the start.
            request = health_pb2.HealthCheckRequest(service="warmpath.v1.GpuAgent/gpu/0")
            replies = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=15)
            status = next(r.status for r in replies if r.status != UNKNOWN)
        print(f"[gpu test] the agent's state:\n{state}")
        assert not state.simulated
        handles = map(pynvml.nvmlDeviceGetHandleByIndex, range(pynvml.nvmlDeviceGetCount()))
        uuids = [pynvml.nvmlDeviceGetUUID(handle) for handle in handles]
        assert [gpu.uuid for gpu in state.gpus] == [
            uuid.decode() if isinstance(uuid, bytes) else uuid for uuid in uuids
        ]
        assert all(gpu.healthy and gpu.memory_total_bytes > 0 for gpu in state.gpus)
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert not state.models, "nothing is loaded unless asked"
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0


async def test_measured_footprint_is_what_nvml_reports_for_the_process() -> None:
    torch = pytest.importorskip("torch")
    inventory = NvmlInventory(pynvml)
    block = torch.empty(512 * MIB, dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    measured = await inventory.process_memory(os.getpid())
    ours = listed((await inventory.read())[0])[os.getpid()]
    print(f"[gpu test] this process: measured {measured}, NVML lists {ours} bytes")
    assert measured == {0: ours}
    # The allocation plus the CUDA context, which is a few hundred MiB at most.
    assert 512 * MIB <= measured[0] < 2 * GIB
    del block


async def test_a_servers_memory_held_by_its_worker_is_measured_as_the_servers() -> None:
    pytest.importorskip("torch")
    inventory = NvmlInventory(pynvml)
    (first, *_) = await inventory.read()
    pinned = {**os.environ, "CUDA_VISIBLE_DEVICES": first.uuid}
    with server_with_worker(HOLDER, "1024", env=pinned) as (server, worker):
        measured = await inventory.process_memory(server)
        by_pid = listed((await inventory.read())[0])
        print(f"[gpu test] server {server} measured {measured}; NVML lists {by_pid}")
        assert server not in by_pid, "the server itself holds no GPU memory"
        assert measured == {0: by_pid[worker]}
        assert GIB <= measured[0] < 3 * GIB


class TorchHolderDriver:
    """A model driver whose "server" is a process holding `mib` MiB of GPU memory,
    pinned to the chosen GPU by UUID as the process driver pins llama.cpp."""

    def __init__(self, mib: int) -> None:
        self.mib = mib
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLDER,
            str(self.mib),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu.uuid},
        )
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 120)).strip() == b"ready"
        self.processes[spec.name] = process
        return RunningModel(spec.name, "http://127.0.0.1:9", spec.name, pid=process.pid)

    async def stop(self, running: RunningModel) -> None:
        process = self.processes.pop(running.model, None)
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def wait_exited(self, running: RunningModel) -> str:
        process = self.processes.get(running.model)
        if process is None:
            return "not running"
        return f"exited with {await process.wait()}"

    async def check(self, running: RunningModel) -> str | None:
        process = self.processes.get(running.model)
        return None if process is not None and process.returncode is None else "exited"

    async def close(self) -> None:
        for model in list(self.processes):
            await self.stop(RunningModel(model, "", model, pid=None))


def holder_agent(
    inventory: NvmlInventory, driver: TorchHolderDriver, estimate: str
) -> ResidencyManager:
    """An agent serving one model, "holder", whose footprint estimate is `estimate`."""
    spec = ModelSpec.model_validate({**GEMMA, "name": "holder", "aliases": [], "memory": estimate})
    return ResidencyManager(
        "gpu-host",
        {spec.name: spec},
        inventory,
        driver,
        book=MemoryBook(),
        estimate_bytes=lambda s: int(s.memory or 0),
        metrics=AgentMetrics(CollectorRegistry()),
    )


async def test_the_agent_measures_a_real_server_and_plans_the_next_load_with_it() -> None:
    pytest.importorskip("torch")
    inventory = NvmlInventory(pynvml)
    driver = TorchHolderDriver(mib=2048)
    agent = holder_agent(inventory, driver, estimate="6GiB")
    try:
        first = (await agent.ensure_loaded("holder")).residency
        pid = driver.processes["holder"].pid
        reading = (await inventory.read())[first.gpu_index]
        print(
            f"[gpu test] loaded on GPU {first.gpu_index} ({reading.name}): "
            f"estimated {first.estimated_bytes / MIB:.0f} MiB, "
            f"measured {first.measured_bytes / MIB:.0f} MiB, "
            f"NVML lists {listed(reading).get(pid, 0) / MIB:.0f} MiB for pid {pid}"
        )
        assert first.estimated_bytes == 6 * GIB
        assert first.measured_bytes == listed(reading)[pid]
        assert 2 * GIB <= first.measured_bytes < 3 * GIB
        (reported,) = (await agent.state()).models
        assert (reported.estimated_bytes, reported.measured_bytes) == (
            6 * GIB,
            first.measured_bytes,
        )

        assert await agent.unload("holder", force=False)
        deadline = time.monotonic() + 30
        while pid in listed((await inventory.read())[first.gpu_index]):
            assert time.monotonic() < deadline, "the unloaded server's memory was not freed"
            await asyncio.sleep(0.2)
        again = (await agent.ensure_loaded("holder")).residency
        print(f"[gpu test] reloaded with estimate {again.estimated_bytes / MIB:.0f} MiB")
        assert again.estimated_bytes == first.measured_bytes, "planned with the measurement"
    finally:
        await agent.close()
        await driver.close()


async def test_memory_another_process_holds_counts_against_placement() -> None:
    pytest.importorskip("torch")
    inventory = NvmlInventory(pynvml)
    (gpu, *_) = await inventory.read()
    # Leaves less than the model's 30 GiB estimate free on the GPU.
    taken = (gpu.memory_free_bytes - 20 * GIB) // MIB
    foreign = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(taken)],
        stdout=subprocess.PIPE,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu.uuid},
    )
    driver = TorchHolderDriver(mib=1024)
    agent = holder_agent(inventory, driver, estimate="30GiB")
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == b"ready"
        with pytest.raises(ResourceExhausted, match="not this agent's") as refused:
            await agent.ensure_loaded("holder")
        print(f"[gpu test] with {taken} MiB held by another process: {refused.value}")
        assert not driver.processes, "nothing was started"

        foreign.kill()
        foreign.wait(30)
        deadline = time.monotonic() + 30
        while (await inventory.read())[0].memory_free_bytes < 30 * GIB:
            assert time.monotonic() < deadline, "the other process's memory was not freed"
            await asyncio.sleep(0.2)
        loaded = (await agent.ensure_loaded("holder")).residency
        print(f"[gpu test] once it exited: loaded, measured {loaded.measured_bytes / MIB:.0f} MiB")
    finally:
        foreign.kill()
        await agent.close()
        await driver.close()
