"""Placements bigger than one GPU against a real NVIDIA host (skipped without one).

What runs: the agent's start-up check and its placement on the live NVML readings.
A split and an offload with a CUDA build of llama.cpp are not covered here: no
such build is installed with this project.
"""

from __future__ import annotations

import pytest

from tests.conftest import nvml_or_skip
from warmpath_agent.capacity import capacity_problems
from warmpath_agent.eviction import GpuRoom
from warmpath_agent.gang import plan_gang
from warmpath_agent.layouts import GangPlan, Layout, ModelShape, Offload
from warmpath_agent.nvml import NvmlInventory

pynvml = nvml_or_skip()

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(120)]
GIB = 2**30


async def test_tensor_parallel_beyond_the_hosts_gpus_is_refused_clearly() -> None:
    gpus = await NvmlInventory(pynvml).read()
    usable = sum(gpu.healthy for gpu in gpus)
    shape = ModelShape(GIB, tensor_parallel=usable + 1)
    (problem,) = capacity_problems({"qwen": ("models.0", shape)}, gpus, None)
    assert f"needs {usable + 1} GPUs, and this host has {usable} usable" in problem


async def test_a_model_larger_than_every_gpu_is_split_or_offloaded_on_the_live_readings() -> None:
    gpus = [gpu for gpu in await NvmlInventory(pynvml).read() if gpu.healthy]
    rooms = [GpuRoom(gpu.index, gpu.memory_free_bytes, ()) for gpu in gpus]
    total = sum(gpu.memory_total_bytes for gpu in gpus) + 8 * GIB
    shape = ModelShape(total, 80, (total - GIB) // 80, splittable=True, offload=Offload.ALLOWED)
    plan = plan_gang(rooms, shape, 0.0, 0.0, model="too-big", host_free_bytes=1 << 50)
    assert isinstance(plan, GangPlan)
    assert plan.layout is Layout.OFFLOAD
    assert 0 < plan.gpu_layers < 80
    assert all(b <= gpu.memory_free_bytes for b, gpu in zip(plan.gpu_bytes, gpus, strict=False))
