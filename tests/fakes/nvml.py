"""A stand-in for the `pynvml` module: the same function names and error type,
GPUs described in plain data, faults injectable per call."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: bytes | str
    name: bytes | str
    total: int
    used: int
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    power_supported: bool = True
    mig_enabled: bool | None = None
    """None: a GPU without MIG support."""
    broken: bool = False
    """Every reading of this GPU raises NVMLError (e.g. it fell off the bus)."""


@dataclass
class FakeNvml:
    gpus: list[FakeGpu]
    failing: set[str] = field(default_factory=set)
    """Function names that raise NVMLError (e.g. 'nvmlDeviceGetMemoryInfo')."""
    calls: list[str] = field(default_factory=list)
    NVMLError: type[Exception] = NVMLError
    NVML_TEMPERATURE_GPU: int = 0
    NVML_DEVICE_MIG_ENABLE: int = 1

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failing:
            raise NVMLError(f"{name} failed (injected)")

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._call("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> Any:
        self._call("nvmlDeviceGetMemoryInfo")
        if gpu.broken:
            raise NVMLError("GPU is lost (injected)")
        return SimpleNamespace(total=gpu.total, used=gpu.used, free=gpu.total - gpu.used)

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> bytes | str:
        self._call("nvmlDeviceGetUUID")
        return gpu.uuid

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes | str:
        self._call("nvmlDeviceGetName")
        return gpu.name

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> Any:
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=42, memory=10)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature")
        return 61

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        if not gpu.power_supported:
            raise NVMLError("Not Supported")
        return 123_456

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[Any]:
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, gpu: FakeGpu) -> list[Any]:
        self._call("nvmlDeviceGetGraphicsRunningProcesses")
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.graphics_processes
        ]

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> list[int]:
        self._call("nvmlDeviceGetMigMode")
        if gpu.mig_enabled is None:
            raise NVMLError("Not Supported")
        return [int(gpu.mig_enabled), int(gpu.mig_enabled)]
