"""GPU inventory read through NVML (the `pynvml` module of nvidia-ml-py).

Every NVML call goes through `_Nvml.call`, the one place that handles
NVMLError and the bytes-vs-str return values of different driver versions.
A GPU whose reading fails is reported unhealthy with the reason; it is read
again on the next poll after a growing back-off, and the agent keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

import psutil

from warmpath_agent.inventory import GpuProcessReading, GpuReading

__all__ = ["NvmlCallFailed", "NvmlInventory", "process_family"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_BACKOFF_START_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 60.0


class NvmlCallFailed(Exception):
    pass


class _Nvml:
    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.module, name)(*args)
        except self.module.NVMLError as error:
            raise NvmlCallFailed(f"{name}: {error}") from error

    def optional(self, name: str, default: _T, *args: Any, convert: Callable[[Any], _T]) -> _T:
        """For readings some GPUs do not support (power, temperature): default instead."""
        try:
            return convert(self.call(name, *args))
        except NvmlCallFailed:
            return default

    @staticmethod
    def text(value: bytes | str) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class NvmlInventory:
    """Live readings of every NVIDIA GPU on the host. `nvmlInit()` is the caller's job."""

    def __init__(self, pynvml: ModuleType, clock: Callable[[], float] = time.monotonic) -> None:
        self._nvml = _Nvml(pynvml)
        self._clock = clock
        self._retry_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._last_good: dict[int, GpuReading] = {}

    @property
    def simulated(self) -> bool:
        return False

    async def read(self) -> list[GpuReading]:
        return await asyncio.to_thread(self._read_all)

    async def process_memory(self, pid: int) -> Mapping[int, int]:
        readings, family = await asyncio.gather(self.read(), asyncio.to_thread(process_family, pid))
        found: dict[int, int] = {}
        for gpu in readings:
            for process in gpu.processes:
                if process.pid in family:
                    found[gpu.index] = found.get(gpu.index, 0) + process.used_memory_bytes
        return found

    def _read_all(self) -> list[GpuReading]:
        try:
            count = int(self._nvml.call("nvmlDeviceGetCount"))
        except NvmlCallFailed as error:
            logger.warning("NVML cannot count GPUs: %s", error)
            return [self._unhealthy(index, str(error)) for index in sorted(self._last_good)]
        return [self._read_one(index) for index in range(count)]

    def _read_one(self, index: int) -> GpuReading:
        now = self._clock()
        if now < self._retry_at.get(index, 0.0):
            return self._unhealthy(index, "backing off after an NVML error")
        try:
            reading = self._read_device(index)
        except NvmlCallFailed as error:
            delay = min(
                self._backoff.get(index, _BACKOFF_START_SECONDS / 2) * 2, _BACKOFF_MAX_SECONDS
            )
            self._backoff[index] = delay
            self._retry_at[index] = now + delay
            logger.warning("GPU %d unhealthy, retry in %.0f s: %s", index, delay, error)
            return self._unhealthy(index, str(error))
        self._backoff.pop(index, None)
        self._retry_at.pop(index, None)
        self._last_good[index] = reading
        return reading

    def _read_device(self, index: int) -> GpuReading:
        nvml = self._nvml
        handle = nvml.call("nvmlDeviceGetHandleByIndex", index)
        memory = nvml.call("nvmlDeviceGetMemoryInfo", handle)
        # A process with both kinds of context is listed in both, with the same memory.
        used_by_pid: dict[int, int] = {}
        for listing in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            listed: list[Any] = nvml.optional(listing, [], handle, convert=list)
            for process in listed:
                pid = int(process.pid)
                used = int(process.usedGpuMemory or 0)  # None: not available (e.g. Windows WDDM)
                used_by_pid[pid] = max(used, used_by_pid.get(pid, 0))
        processes = tuple(GpuProcessReading(pid, used) for pid, used in used_by_pid.items())
        # [current, pending]; GPUs without MIG answer NOT_SUPPORTED.
        mig_enabled = nvml.optional(
            "nvmlDeviceGetMigMode",
            False,
            handle,
            convert=lambda modes: modes[0] == nvml.module.NVML_DEVICE_MIG_ENABLE,
        )
        return GpuReading(
            index=index,
            uuid=nvml.text(nvml.call("nvmlDeviceGetUUID", handle)),
            name=nvml.text(nvml.call("nvmlDeviceGetName", handle)),
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
            memory_free_bytes=int(memory.free),
            simulated=False,
            utilization_percent=nvml.optional(
                "nvmlDeviceGetUtilizationRates", 0, handle, convert=lambda u: int(u.gpu)
            ),
            temperature_celsius=nvml.optional(
                "nvmlDeviceGetTemperature",
                0,
                handle,
                nvml.module.NVML_TEMPERATURE_GPU,
                convert=int,
            ),
            power_watts=nvml.optional(
                "nvmlDeviceGetPowerUsage", 0.0, handle, convert=lambda mw: float(mw) / 1000.0
            ),
            processes=processes,
            # A whole-GPU placement on a partitioned GPU fails in the model server
            # (CUDA sees only MIG instances), so it is not offered one.
            healthy=not mig_enabled,
            unhealthy_reason=(
                "MIG mode is on: Warmpath places models on whole GPUs; turn MIG off for "
                f"this GPU (nvidia-smi -i {index} -mig 0) or leave it to other workloads"
                if mig_enabled
                else ""
            ),
        )

    def _unhealthy(self, index: int, reason: str) -> GpuReading:
        last = self._last_good.get(index)
        return GpuReading(
            index=index,
            uuid=last.uuid if last else f"GPU-unknown-{index}",
            name=last.name if last else "unknown",
            memory_total_bytes=last.memory_total_bytes if last else 0,
            memory_used_bytes=last.memory_used_bytes if last else 0,
            memory_free_bytes=0,
            simulated=False,
            healthy=False,
            unhealthy_reason=reason,
        )


def process_family(pid: int) -> frozenset[int]:
    """`pid` and every process under it now. A server's GPU memory can sit in
    workers it started (vLLM's engine core, SGLang's schedulers, or the server
    itself under a container's shell), not in the process the driver knows."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:  # gone, or not ours to look at: the pid alone
        return frozenset({pid})
    return frozenset({pid, *(child.pid for child in descendants)})
