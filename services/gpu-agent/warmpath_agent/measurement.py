"""Measuring what a model's server really holds on GPUs (NVML, through the
inventory), and describing a model its server offloaded itself (Ollama)."""

from __future__ import annotations

import logging
from dataclasses import replace

from warmpath_agent.drivers import RunningModel
from warmpath_agent.inventory import GpuInventory
from warmpath_agent.layouts import Layout
from warmpath_agent.residents import Residency

__all__ = ["ASSUMED_SERVER_LAYERS", "GpuMeasurements", "offloaded_by_server"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
# Layers assumed for a model whose server offloaded part of it and whose layer count
# is unknown here (an Ollama model: no file to read), to say "K of L layers".
ASSUMED_SERVER_LAYERS = 32


class GpuMeasurements:
    """What NVML saw each model's server hold, remembered for its next placement."""

    def __init__(self, inventory: GpuInventory) -> None:
        self._inventory = inventory
        self._whole: dict[str, int] = {}
        self._per_gpu: dict[str, dict[int, int]] = {}

    def whole(self, model: str) -> int:
        """The whole model's last measured footprint (0: never measured whole)."""
        return self._whole.get(model, 0)

    def per_gpu(self, model: str) -> dict[int, int]:
        """Its last measured share on each GPU where NVML saw its server."""
        return self._per_gpu.get(model, {})

    def forget(self, model: str) -> None:
        """What was measured of it says nothing of what it needs (seen asleep)."""
        self._whole.pop(model, None)

    async def measure(self, running: RunningModel, *, whole: bool = True) -> int:
        """Memory the model really holds on GPUs (every process of its server, on every
        GPU); remembered for its next placement when `whole` (an offloaded model's GPU
        part says nothing of what the whole model needs)."""
        if self._inventory.simulated:
            return 0
        if running.memory_bytes:
            measured = running.memory_bytes
        elif running.pid is not None:
            per_gpu = dict(await self._inventory.process_memory(running.pid))
            self._per_gpu[running.model] = per_gpu
            measured = sum(per_gpu.values())
            if not measured:
                logger.warning(
                    "could not measure %s's GPU memory: NVML lists no process of its server "
                    "(pid %d) or its workers; placement goes on with the estimate. Either the "
                    "server does not use the GPU (a CPU-only build?), or the agent runs in a "
                    "container of its own: NVML reports host pids, so it needs the host's PID "
                    "namespace (compose: pid: host; Kubernetes: hostPID: true)",
                    running.model, running.pid,
                )  # fmt: skip
        else:
            return 0
        if measured and whole:
            self._whole[running.model] = measured
        return measured

    def shares(self, model: str, residency: Residency, measured: int) -> tuple[int, ...]:
        """Each GPU's measured share, replacing the estimate where NVML saw the server."""
        per_gpu = self._per_gpu.get(model, {})
        if not measured:
            return residency.gpu_bytes
        if len(residency.on_gpus) == 1:
            return (measured,)
        if not per_gpu:
            return residency.gpu_bytes
        return tuple(per_gpu.get(i, 0) for i in residency.on_gpus)


def offloaded_by_server(ready: Residency, host_bytes: int, shares: tuple[float, ...]) -> Residency:
    """The server (Ollama) put part of the model in host RAM itself: the residency
    says what it reports, in layers where the model's layer count is known."""
    on_gpu_bytes = ready.footprint_bytes
    total_layers = ready.total_layers or ASSUMED_SERVER_LAYERS
    on_gpu = round(total_layers * on_gpu_bytes / max(on_gpu_bytes + host_bytes, 1))
    on_gpu = min(max(on_gpu, 0), total_layers)
    layers = tuple(round(on_gpu * share) for share in shares) or (on_gpu,)
    return replace(
        ready,
        layout=Layout.OFFLOAD,
        layers_on_gpu=layers,
        total_layers=total_layers,
        host_bytes=host_bytes,
        placement_reason=(
            f"the server placed {host_bytes / _MIB:.0f} MiB of the model in host RAM "
            f"and {on_gpu_bytes / _MIB:.0f} MiB on GPUs"
        ),
    )
