"""The NVML adapter against a real NVIDIA GPU. Skipped where there is none."""

from __future__ import annotations

import os

import pytest

from warmpath_agent.nvml import NvmlInventory

pynvml = pytest.importorskip("pynvml")

try:
    pynvml.nvmlInit()
except pynvml.NVMLError as error:  # no driver, no GPU: this machine cannot run these tests
    pytest.skip(f"no NVIDIA GPU here ({error})", allow_module_level=True)

pytestmark = pytest.mark.gpu


async def test_inventory_reads_every_gpu() -> None:
    readings = await NvmlInventory(pynvml).read()
    assert len(readings) == pynvml.nvmlDeviceGetCount()
    for gpu in readings:
        assert gpu.healthy, gpu.unhealthy_reason
        assert gpu.uuid.startswith("GPU-") and gpu.name
        assert gpu.memory_total_bytes > 0
        assert gpu.memory_used_bytes + gpu.memory_free_bytes <= gpu.memory_total_bytes


async def test_measured_footprint_is_what_nvml_reports_for_the_process() -> None:
    torch = pytest.importorskip("torch")
    inventory = NvmlInventory(pynvml)
    block = torch.empty(512 * 1024 * 1024, dtype=torch.uint8, device="cuda:0")  # 512 MiB
    torch.cuda.synchronize()
    measured = await inventory.process_memory(os.getpid())
    reading = (await inventory.read())[0]
    ours = [p.used_memory_bytes for p in reading.processes if p.pid == os.getpid()]
    assert measured == {0: ours[0]}
    # The allocation plus the CUDA context, which is a few hundred MiB at most.
    assert 512 * 2**20 <= measured[0] < 2 * 2**30
    del block
