"""The port every model driver implements: start, stop and watch one model server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import Layout
from warmpath_common.config import ModelSpec, Runtime

__all__ = [
    "DriverSet",
    "GpuPlacement",
    "ModelDriver",
    "ModelLoadFailed",
    "RunningModel",
    "reachable_host",
]


@dataclass(frozen=True, slots=True)
class GpuPlacement:
    """The GPUs a model server gets and how the model is laid out over them (layouts.py)."""

    gpus: tuple[GpuReading, ...]
    layout: Layout = Layout.SINGLE
    shares: tuple[float, ...] = ()
    """Each GPU's share of the layers (layer split and offload over several GPUs)."""
    gpu_layers: int | None = None
    """Layers on the GPUs for a partial offload (llama.cpp's n_gpu_layers); None: all."""
    total_layers: int = 0

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(gpu.uuid for gpu in self.gpus)

    @classmethod
    def one(cls, gpu: GpuReading) -> GpuPlacement:
        return cls((gpu,))


@dataclass(frozen=True, slots=True)
class RunningModel:
    """A model server the driver started (or adopted)."""

    model: str
    base_url: str
    served_model_id: str
    pid: int | None
    """Host process id, where the driver knows it (for per-process GPU memory)."""
    runtime: Runtime = Runtime.PROCESS
    memory_bytes: int | None = None
    """GPU memory the server itself reports for the model (Ollama's size_vram), if any."""
    probe_url: str = ""
    """Where the agent asks, by GET and never by generating, whether the server still
    answers (server_watch.py): a path it answers even while it generates. Empty: not
    probed."""
    host_bytes: int | None = None
    """Host RAM the server itself reports for the model's offloaded part (Ollama's
    size - size_vram), if any: the server chose to offload it."""


class ModelDriver(Protocol):
    """Starts and stops model servers. Readiness never involves generating text."""

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        """Starts the server and returns once its readiness endpoint answers. `gpu` is
        the first GPU of `placement` (None: that GPU alone, the whole model on it).

        Raises ModelLoadFailed with the reason when it cannot.
        """
        ...

    async def stop(self, running: RunningModel) -> None:
        """Stops the server and frees its memory. Idempotent."""
        ...

    async def wait_exited(self, running: RunningModel) -> str:
        """Returns (with the reason) when the server stops without being asked to."""
        ...

    async def check(self, running: RunningModel) -> str | None:
        """Looks now, without generating, whether the server is still up: None if it
        is, else why not. For a caller that could not reach a server the agent holds
        ready: `wait_exited` may only notice a death at its next poll."""
        ...

    async def close(self) -> None:
        """Stops everything this driver started."""
        ...


class ModelLoadFailed(Exception):
    """A model server could not be started or never became ready.

    The message is for the agent's log and state, and may name files on this host;
    `for_caller` says the same without them, for a remote caller.
    """

    def __init__(self, message: str, *, for_caller: str | None = None) -> None:
        super().__init__(message)
        self.for_caller = message if for_caller is None else for_caller


class DriverSet:
    """Sends each model to the driver for its runtime (process, docker, ollama)."""

    def __init__(self, drivers: Mapping[Runtime, ModelDriver]) -> None:
        self._drivers = dict(drivers)

    def _for(self, runtime: Runtime) -> ModelDriver:
        driver = self._drivers.get(runtime)
        if driver is None:
            raise ModelLoadFailed(f"runtime {runtime.value} is not available on this agent")
        return driver

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        return await self._for(spec.effective_runtime).start(spec, gpu, placement)

    async def stop(self, running: RunningModel) -> None:
        await self._for(running.runtime).stop(running)

    async def wait_exited(self, running: RunningModel) -> str:
        return await self._for(running.runtime).wait_exited(running)

    async def check(self, running: RunningModel) -> str | None:
        return await self._for(running.runtime).check(running)

    async def close(self) -> None:
        for driver in self._drivers.values():
            await driver.close()


def reachable_host(bind_host: str) -> str:
    """Where this host reaches a server bound to `bind_host` (all interfaces: loopback)."""
    # A comparison with the wildcard address, not a bind to it.
    return "127.0.0.1" if bind_host in ("0.0.0.0", "") else bind_host  # nosec B104
