from __future__ import annotations

import os
from types import ModuleType
from typing import cast

from tests.fakes.nvml import FakeGpu, FakeNvml
from warmpath_agent.nvml import NvmlInventory

GB = 1024**3


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def inventory(nvml: FakeNvml, clock: Clock | None = None) -> NvmlInventory:
    return NvmlInventory(cast(ModuleType, nvml), clock=clock or Clock())


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                b"GPU-aaa", b"NVIDIA H100 80GB HBM3", 80 * GB, 10 * GB, [(4242, 9 * GB), (7, None)]
            ),
            FakeGpu("GPU-bbb", "NVIDIA L4", 24 * GB, 0, power_supported=False),
        ]
    )


async def test_readings_decode_names_and_report_live_memory() -> None:
    first, second = await inventory(two_gpus()).read()
    assert (first.uuid, first.name) == (
        "GPU-aaa",
        "NVIDIA H100 80GB HBM3",
    )  # bytes from old drivers
    assert (second.uuid, second.name) == ("GPU-bbb", "NVIDIA L4")  # str from new ones
    assert first.memory_free_bytes == 70 * GB and not first.simulated
    assert first.utilization_percent == 42 and first.temperature_celsius == 61
    assert first.power_watts == 123.456
    assert second.power_watts == 0.0 and second.healthy, "an unsupported reading is not a fault"
    assert [(p.pid, p.used_memory_bytes) for p in first.processes] == [(4242, 9 * GB), (7, 0)]


async def test_graphics_processes_count_too_and_a_process_in_both_lists_once() -> None:
    nvml = two_gpus()
    nvml.gpus[0].graphics_processes = [(1234, 1 * GB), (4242, 9 * GB)]
    first, _ = await inventory(nvml).read()
    assert sorted((p.pid, p.used_memory_bytes) for p in first.processes) == [
        (7, 0),
        (1234, 1 * GB),
        (4242, 9 * GB),
    ]


async def test_a_gpu_in_mig_mode_is_reported_unusable_with_what_to_do() -> None:
    nvml = two_gpus()
    nvml.gpus[0].mig_enabled = True
    nvml.gpus[1].mig_enabled = False
    partitioned, whole = await inventory(nvml).read()
    assert not partitioned.healthy
    assert "MIG mode is on" in partitioned.unhealthy_reason
    assert "nvidia-smi -i 0 -mig 0" in partitioned.unhealthy_reason
    assert partitioned.memory_total_bytes == 80 * GB, "still read, for the state stream"
    assert whole.healthy


async def test_process_memory_is_per_pid() -> None:
    assert await inventory(two_gpus()).process_memory(4242) == {0: 9 * GB}
    assert await inventory(two_gpus()).process_memory(1) == {}


async def test_process_memory_counts_the_workers_a_server_started(
    server_and_worker: tuple[int, int],
) -> None:
    server, worker = server_and_worker
    nvml = two_gpus()
    nvml.gpus[0].processes = [(worker, 7 * GB), (os.getpid(), 1 * GB)]
    nvml.gpus[1].processes = [(server, 2 * GB)]
    # The test process started the server: its memory is not the server's.
    assert await inventory(nvml).process_memory(server) == {0: 7 * GB, 1: 2 * GB}


async def test_an_nvml_error_marks_the_gpu_unhealthy_and_backs_off() -> None:
    nvml, clock = two_gpus(), Clock()
    gpus = inventory(nvml, clock)
    await gpus.read()
    nvml.gpus[0].broken = True
    broken, healthy = await gpus.read()
    assert healthy.healthy
    assert not broken.healthy and "injected" in broken.unhealthy_reason
    assert broken.memory_free_bytes == 0, "nothing is placed on an unhealthy GPU"
    assert broken.uuid == "GPU-aaa", "the last good identity is kept"
    calls = len(nvml.calls)
    nvml.gpus[0].broken = False
    again, _ = await gpus.read()
    assert not again.healthy and "backing off" in again.unhealthy_reason
    assert nvml.calls[calls:].count("nvmlDeviceGetMemoryInfo") == 1, "only the healthy GPU was read"
    clock.now += 1.5
    recovered, _ = await gpus.read()
    assert recovered.healthy and recovered.memory_free_bytes == 70 * GB


async def test_losing_nvml_entirely_degrades_instead_of_crashing() -> None:
    nvml = two_gpus()
    gpus = inventory(nvml)
    await gpus.read()
    nvml.failing.add("nvmlDeviceGetCount")
    readings = await gpus.read()
    assert [g.healthy for g in readings] == [False, False]
